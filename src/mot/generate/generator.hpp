// Autoregressive generation for a batch of prompts (SPEC section 4, `mot generate`).
//
// With the KV cache, the prompts are prefilled in one forward pass (each row its own
// length), then every step feeds one new position per row against the cached keys and
// values (stored after each position's own modality's projections, QK-norm and RoPE).
// Without it, every step recomputes each row's whole prefix; both give the same tokens
// (tests/cli/test_generate.py checks it for every arch). Rows that finished keep
// re-feeding their last position (overwriting the same cache slot) until all are done,
// so the batch never changes shape.
//
// Each row draws from its own RNG stream (seed, row), so a row's tokens do not depend
// on the other rows, on the batch size or on the cache. Classifier-free guidance
// (image targets, cfg > 0): every row gets an unconditional twin, context <bos><boi>,
// in the same batch; its logits z_u and the row's z_c combine to z_u + cfg (z_c - z_u)
// at image codes.
//
// MoE models route by their calibrated thresholds (model.hpp): expert choice would
// rank a position against ones not generated yet. The model runs batch-invariant
// (Model::set_batch_invariant): every row's logits are computed from that row alone in
// a fixed order, so the cached and uncached decoders agree bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "mot/generate/grammar.hpp"
#include "mot/generate/sampling.hpp"
#include "mot/model/model.hpp"

namespace mot {

struct GenerationOptions {
  SamplingOptions sampling;
  int64_t max_tokens = 0;  // new tokens per row at most (0: the target's default)
  double cfg = 0.0;        // guidance weight for image targets; 0: none
  uint64_t seed = 0;
  bool kv_cache = true;
  Precision precision = Precision::fp32;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // from the document start (<bos> ...), without the target's opener
  GenTarget target = GenTarget::text;
};

struct Generation {
  std::vector<int32_t> tokens;  // the new tokens: the target's opener (if any), then what was generated
  bool finished = false;        // the target ended (<eos>, <eoi>, <eos_speech>) rather than hit max_tokens
};

// Default new-token budgets: an image's codes + <eoi> (+ its opener); text 128;
// speech 500 units (20 s).
int64_t default_max_tokens(const TokenGrammar& g, GenTarget t);

// mot::Error for bad options (sampling ranges, max_tokens < 1 or too small for an
// image, cfg not finite or < 0, cfg without an image target, a prompt that is not a
// well-formed document prefix or too long for the model).
std::vector<Generation> generate(const ModelConfig& cfg, const float* params, const std::vector<float>& moe_thresholds,
                                 const TokenGrammar& grammar, const std::vector<GenerationRequest>& requests,
                                 const GenerationOptions& opt);

}  // namespace mot
