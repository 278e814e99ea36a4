// What `mot evalgen` writes and reports, shared by the discrete and the Transfusion
// settings: the flat "task.metric" keys beside the nested ones, and the --out folder
// (images/NNN.png, generations.jsonl, grid.png, evalgen.json).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/data/media/image.hpp"
#include "mot/evalgen/scores.hpp"

namespace mot::evalgen_detail {

void add_flat(nlohmann::json& j, const std::string& prefix, const nlohmann::json& part);

// transcripts: null when the corpus has no speech.
void write_outputs(const std::string& out, const std::vector<HeldOutScene>& scenes,
                   const std::vector<data::Image>& truth, const std::vector<data::Image>& images,
                   const std::vector<std::string>& captions, const std::vector<std::string>* transcripts,
                   const nlohmann::json& j);

}  // namespace mot::evalgen_detail
