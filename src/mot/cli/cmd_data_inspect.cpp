// `mot data inspect`: a shard's header and token counts. Registered under `mot data`.
#include <cstdio>
#include <memory>

#include "mot/cli/commands.hpp"
#include "mot/data/format/shard.hpp"

namespace mot::cli {

void register_data_inspect(CLI::App& data, Action& action) {
  struct InspectOpts { std::string path; };
  auto ho = std::make_shared<InspectOpts>();
  auto* show = data.add_subcommand("inspect", "Print a shard's header and token counts per modality");
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
