// `mot data pack`: a .jsonl token file -> one shard. Registered under `mot data`.
#include <cstdio>
#include <memory>

#include "mot/cli/commands.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/model/config.hpp"

namespace mot::cli {

void register_data_pack(CLI::App& data, Action& action) {
  struct PackOpts { std::string config, input, out; };
  auto po = std::make_shared<PackOpts>();
  auto* pack = data.add_subcommand("pack", "Pack a .jsonl token file into a shard (one row = one document)");
  pack->add_option("--config", po->config, "config TOML (its [model] modalities)")->required();
  pack->add_option("--input", po->input, ".jsonl with {\"tokens\": [...]} rows")->required();
  pack->add_option("--out", po->out, "output .shard file (name it val-*.shard for validation)")->required();
  pack->callback([po, &action] {
    action = [po] {
      RunConfig rc = load_run_config(po->config, {});
      if (rc.model.has_continuous())
        fail(po->config, ": a Transfusion config (continuous modality); mot data pack packs token rows only "
             "(make Transfusion data with `mot data synth --setting transfusion`)");
      auto rows = data::read_jsonl_rows(po->input, rc.model.vocab_size);
      std::vector<uint32_t> tokens;
      std::vector<uint64_t> offsets{0};
      for (const auto& r : rows) {
        for (int32_t t : r)
          if (t >= 0) tokens.push_back(static_cast<uint32_t>(t));
        offsets.push_back(tokens.size());
      }
      std::vector<data::ModalityRange> mods;
      for (const auto& m : rc.model.modalities)
        mods.push_back({m.name, static_cast<uint32_t>(m.begin), static_cast<uint32_t>(m.end)});
      data::write_shard(po->out, mods, tokens, offsets);
      std::printf("wrote %s: %zu documents, %zu tokens\n", po->out.c_str(), rows.size(), tokens.size());
      return 0;
    };
  });
}

}  // namespace mot::cli
