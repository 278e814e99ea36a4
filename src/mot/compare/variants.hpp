// The model variants `mot compare` trains side by side. A variant is the base config
// with its [model] architecture keys replaced (dense, mot, moe, the MoT+MoE hybrid,
// untie ablations, leave-one-modality-out sharing) or another config file's [model]
// table; [train] and [data] always come from the base, so every variant sees the same
// data, data order, batch and schedule.
#pragma once
#include <string>
#include <vector>

#include "mot/model/config.hpp"

namespace mot::compare {

struct Variant {
  std::string name;         // as given in --variants; a config file's stem
  std::string description;  // one line for the report
  std::string source;       // how it was made: the --set overrides, or the file
  RunConfig config;         // resolved: the variant's [model], the base's [train]/[data]
};

// The variant names `--variants` accepts, one per line, for --help and errors.
std::string variant_help();

// Resolves `names` against the base config (`overrides` = the user's --set, applied
// before each variant's own keys; `data` = the data path every variant trains on).
// The dense baseline must be among them and comes first in the result. Throws
// mot::Error for an unknown or duplicate variant, a variant the config rejects, or a
// variant file whose vocabulary or data differs from the base's.
std::vector<Variant> resolve_variants(const std::vector<std::string>& names, const std::string& base_config,
                                      const std::vector<std::string>& overrides, const std::string& data);

}  // namespace mot::compare
