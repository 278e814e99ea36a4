#include <filesystem>

#include "mot/cli/commands.hpp"
#include "mot/core/error.hpp"
#include "mot/data/dataset.hpp"
#include "mot/data/shard.hpp"
#include "mot/data/synth_tokens.hpp"
#include "mot/model/config.hpp"

namespace mot::cli {

void register_data(CLI::App& app, Action& action) {
  auto* data = app.add_subcommand("data", "Make and inspect training data");
  data->require_subcommand(1);

  struct SynthOpts { std::string config, out; int64_t tokens = 1'000'000, val_tokens = 50'000; uint64_t seed = 1; };
  auto so = std::make_shared<SynthOpts>();
  auto* synth = data->add_subcommand("synth-tokens", "Generate learnable token shards for a config's modalities");
  synth->add_option("--config", so->config, "config TOML (its [model] modalities)")->required();
  synth->add_option("--out", so->out, "output directory")->required();
  synth->add_option("--tokens", so->tokens, "training tokens")->check(CLI::PositiveNumber);
  synth->add_option("--val-tokens", so->val_tokens, "validation tokens")->check(CLI::PositiveNumber);
  synth->add_option("--seed", so->seed, "seed");
  synth->callback([so, &action] {
    action = [so] {
      RunConfig rc = load_run_config(so->config, {});
      data::write_synth_shards(rc.model, so->out, so->tokens, so->val_tokens, so->seed);
      std::printf("wrote %s/train-000.shard and %s/val-000.shard\n", so->out.c_str(), so->out.c_str());
      return 0;
    };
  });

  struct PackOpts { std::string config, input, out; };
  auto po = std::make_shared<PackOpts>();
  auto* pack = data->add_subcommand("pack", "Pack a .jsonl token file into a shard (one row = one document)");
  pack->add_option("--config", po->config, "config TOML (its [model] modalities)")->required();
  pack->add_option("--input", po->input, ".jsonl with {\"tokens\": [...]} rows")->required();
  pack->add_option("--out", po->out, "output .shard file (name it val-*.shard for validation)")->required();
  pack->callback([po, &action] {
    action = [po] {
      RunConfig rc = load_run_config(po->config, {});
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

  struct ShowOpts { std::string path; };
  auto ho = std::make_shared<ShowOpts>();
  auto* show = data->add_subcommand("inspect", "Print a shard's header and token counts per modality");
  show->add_option("shard", ho->path, "a .shard file")->required();
  show->callback([ho, &action] {
    action = [ho] {
      data::Shard s = data::Shard::open(ho->path);
      std::printf("%s: %zu tokens, %zu documents, vocab %u\n", ho->path.c_str(), s.n_tokens(), s.n_docs(),
                  s.vocab_size());
      std::vector<size_t> count(s.modalities().size());
      for (size_t i = 0; i < s.n_tokens(); ++i) {
        const uint32_t t = s.token(i);
        for (size_t m = 0; m < count.size(); ++m)
          if (t >= s.modalities()[m].begin && t < s.modalities()[m].end) count[m]++;
      }
      for (size_t m = 0; m < count.size(); ++m)
        std::printf("  %-10s [%u, %u): %zu tokens\n", s.modalities()[m].name.c_str(), s.modalities()[m].begin,
                    s.modalities()[m].end, count[m]);
      return 0;
    };
  });
}

}  // namespace mot::cli
