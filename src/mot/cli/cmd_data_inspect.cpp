// `mot data inspect`: a shard's header and token counts. Registered under `mot data`.
#include <cstdio>
#include <memory>

#include "mot/cli/commands.hpp"
#include "mot/data/format/shard.hpp"

namespace mot::cli {

void register_data_inspect(CLI::App& data, Action& action) {
  struct InspectOpts { std::string path; };
  auto ho = std::make_shared<InspectOpts>();
  auto* show = data.add_subcommand("inspect", "Print a shard's header, token counts per modality and its images");
  show->add_option("shard", ho->path, "a .shard file")->required();
  show->callback([ho, &action] {
    action = [ho] {
      data::Shard s = data::Shard::open(ho->path);
      std::printf("%s: %zu tokens, %zu documents, vocab %u\n", ho->path.c_str(), s.n_tokens(), s.n_docs(),
                  s.vocab_size());
      std::vector<size_t> count(s.modalities().size());
      std::vector<int32_t> tokens(s.n_tokens());
      s.read_tokens(0, tokens.size(), tokens.data());  // image positions read as kShardImageEntry
      for (const int32_t t : tokens) {
        for (size_t m = 0; m < count.size(); ++m)
          if (t >= 0 && static_cast<uint32_t>(t) >= s.modalities()[m].begin &&
              static_cast<uint32_t>(t) < s.modalities()[m].end)
            count[m]++;
      }
      for (size_t m = 0; m < count.size(); ++m)
        std::printf("  %-10s [%u, %u): %zu tokens\n", s.modalities()[m].name.c_str(), s.modalities()[m].begin,
                    s.modalities()[m].end, count[m]);
      if (s.n_images() > 0 || s.image_patch() > 0)  // version 2: continuous images (SPEC 2b)
        std::printf("  %-10s continuous: %zu images of %ux%ux%u pixels, %u patches of %u each (%zu positions)\n",
                    s.image_modality().c_str(), s.n_images(), s.image_size(), s.image_size(), s.image_channels(),
                    s.image_positions(), s.image_patch(), s.n_images() * s.image_positions());
      return 0;
    };
  });
}

}  // namespace mot::cli
