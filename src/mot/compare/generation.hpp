// Generation quality in a comparison (`mot compare`, `mot demo`): `mot evalgen` on
// every run's final model when the data is the built-in corpus (it has
// val-scenes.jsonl), the corpus's ceiling and chance levels beside them, a table per
// variant with the spread over seeds, a picture of each variant's images for the same
// held-out captions, and a one-line answer per direction.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mot::compare {

struct GenerationResults {
  int64_t scenes = 0;
  std::map<std::pair<std::string, int>, nlohmann::json> runs;  // (variant, seed) -> evalgen JSON
  nlohmann::json truth, shuffled;                               // the corpus's ceiling and chance
};

// Whether `data` is a corpus evalgen can score.
bool has_generation_ground_truth(const std::string& data);

// Runs evalgen (n scenes, the run's seed) on DIR/seed-S/VARIANT/model.safetensors into
// its evalgen/ folder, or reuses an evalgen.json newer than the model.
GenerationResults evaluate_generation(const std::string& out_dir, const std::string& data,
                                      const std::vector<std::string>& variants, const std::vector<int>& seeds,
                                      int64_t scenes, const std::string& who);

// The report's "## Generation" section (markdown) and generation.png in out_dir;
// `answer` gets the one-line verdicts (first variant = the baseline).
std::string generation_section(const GenerationResults& g, const std::string& out_dir,
                               const std::vector<std::string>& variants, const std::vector<int>& seeds,
                               std::string& answer);

}  // namespace mot::compare
