// DIR/compare.json: what a comparison directory holds (the variants' resolved
// configs, seeds, steps and a fingerprint of the data). A re-run with the same
// arguments resumes that comparison; a re-run asking for a different one is refused
// instead of mixing runs of two experiments in one report.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/compare/variants.hpp"

namespace mot::compare {

nlohmann::json describe_comparison(const std::vector<Variant>& variants, const std::vector<int>& seeds,
                                   int64_t steps, const std::string& data);

// Makes `dir` hold the comparison `description`: (fresh) deletes an earlier comparison
// there first, or checks that its compare.json describes the same comparison; then
// writes compare.json. The caller holds dir's io::DirLock (so dir exists, and its
// .lock file is left alone). Throws mot::Error naming the first difference when dir
// holds another comparison, or when dir holds files but no compare.json.
void claim_compare_dir(const std::string& dir, const nlohmann::json& description, bool fresh);

}  // namespace mot::compare
