// Choosing the next token from a row of logits, outside the model: greedy
// (temperature 0), temperature, top-k and top-p (nucleus) sampling, restricted to
// allowed token ranges (modality-constrained decoding: inside an image span only image
// codes, and so on). Deterministic for a given RNG state; greedy (temperature 0, or
// top_k 1) draws nothing from it, every other choice draws exactly one uniform.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "mot/core/rng.hpp"

namespace mot {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (the highest logit; ties to the lowest id)
  int64_t top_k = 0;         // keep the k most likely tokens (0: all)
  double top_p = 1.0;        // keep the smallest most-likely set whose probability reaches p
};

struct TokenRange {
  int32_t begin = 0, end = 0;  // ids [begin, end)
};

// mot::Error naming the option unless temperature is finite and >= 0, top_k >= 0 and
// 0 < top_p <= 1.
void validate_sampling(const SamplingOptions& o);

class TokenSampler {
 public:
  // Sizes the scratch for a vocabulary of `vocab` ids (no allocation per token after).
  explicit TokenSampler(int64_t vocab);

  // One token from logits[0, vocab). `allowed` lists the ranges a token may come from
  // (empty: the whole vocabulary); ids outside the vocabulary are ignored. mot::Error if
  // no id is allowed or an allowed logit is not finite.
  int32_t sample(const float* logits, const std::vector<TokenRange>& allowed, const SamplingOptions& o, Rng& rng);

 private:
  int64_t vocab_;
  std::vector<std::pair<float, int32_t>> cand_;  // (logit, id) of the allowed ids
  std::vector<double> prob_;
};

}  // namespace mot
