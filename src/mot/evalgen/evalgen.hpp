// `mot evalgen` as a library call (the CLI, `mot compare` and `mot demo` use it):
// generation quality on the built-in corpus's held-out scenes, scored exactly against
// their ground truth (scores.hpp): captions -> images, images -> captions, and
// speech -> text where the corpus has speech.
//
// baseline "truth" | "shuffled" | "random" replaces the model by the corpus itself (each
// scene's own VQ image and caption), by another scene's (a fixed derangement) or by
// uniformly random codes and text tokens: the metrics' ceiling and chance levels,
// measured by the same code path.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mot/backend/precision.hpp"

namespace mot {

struct EvalgenOptions {
  std::string model;     // a model file, or empty with a baseline
  std::string data;      // the corpus ("": the data the model's run trained on)
  std::string baseline;  // "", truth, shuffled or random
  std::string out;       // "": nothing written; else images/, generations.jsonl, grid.png, evalgen.json
  int64_t n = 0;         // held-out scenes (0: all)
  int64_t batch = 32;    // prompts per generation batch
  double temperature = 1.0, top_p = 1.0;
  double cfg = -1.0;     // guidance weight; < 0: the setting's default (discrete 0, Transfusion 3)
  int64_t steps = 50;    // DDIM steps (Transfusion)
  double eta = 0.0;      // DDIM's eta (Transfusion; 0 deterministic, 1 DDPM-like)
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::string dtype = "fp32";
};

// One JSON object: n, model, baseline, sampling, seconds, and for each task (image,
// caption, speech) its scores both nested ("image": {...}) and flat ("image.exact").
// mot::Error on bad input.
nlohmann::json run_evalgen(const EvalgenOptions& o);

}  // namespace mot
