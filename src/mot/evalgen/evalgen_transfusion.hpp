// `mot evalgen` for Transfusion models and corpora (SPEC 2b): the same held-out scenes
// and exact scores as the discrete setting (scores.hpp), with images sampled by DDIM
// and classifier-free guidance (generate/diffusion_sampler.hpp) and captions decoded
// after the scene's clean image. Baselines (truth, shuffled, random) as in evalgen.hpp,
// with random pixels for images.
#pragma once
#include <nlohmann/json.hpp>

#include "mot/evalgen/evalgen.hpp"

namespace mot {

// Whether DIR's vocab.json describes a Transfusion corpus (an image modality of kind
// "continuous"), so run_evalgen hands it here.
bool is_transfusion_corpus(const std::string& dir);

nlohmann::json run_evalgen_transfusion(const EvalgenOptions& o, const std::string& dir);

}  // namespace mot
