// What `mot evalgen` reads, writes and reports in both the discrete and the Transfusion
// settings: the held-out scenes with their val-gen/val-cap documents, the flat
// "task.metric" keys beside the nested ones, and the --out folder (images/NNN.png,
// generations.jsonl, grid.png, evalgen.json).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/data/format/shard.hpp"
#include "mot/data/media/image.hpp"
#include "mot/evalgen/scores.hpp"

namespace mot::evalgen_detail {

// DIR's held-out scenes (the first n; 0: all) and the val-gen / val-cap shards whose
// document i is scene i. mot::Error when a file is missing or holds too few documents.
struct HeldOut {
  std::vector<HeldOutScene> scenes;
  data::Shard gen, cap;
};
HeldOut open_held_out(const std::string& dir, int64_t n);

void add_flat(nlohmann::json& j, const std::string& prefix, const nlohmann::json& part);

// transcripts: null when the corpus has no speech.
void write_outputs(const std::string& out, const std::vector<HeldOutScene>& scenes,
                   const std::vector<data::Image>& truth, const std::vector<data::Image>& images,
                   const std::vector<std::string>& captions, const std::vector<std::string>* transcripts,
                   const nlohmann::json& j);

}  // namespace mot::evalgen_detail
