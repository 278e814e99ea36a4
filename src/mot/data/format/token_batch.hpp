// Token rows as they come from shards, and their translation into the model's Batch.
#pragma once
#include <cstdint>
#include <vector>

#include "mot/model/batch.hpp"
#include "mot/model/config.hpp"

namespace mot {

// rows x len ids, -1 padding only at row ends. Position t of a row is an input; its
// target is token t+1. The last valid token of a row is only a target (its own logits
// would have no target), so a row of n valid tokens has n - 1 positions.
//
// Transfusion (SPEC 2b): an entry of -2 (kContinuousEntry) is a continuous position; a
// maximal run of them in a row is one image span. Their clean latents z0 are `latents`
// (latent_dim floats per -2 entry, entries in row-major order). `span_t` holds each
// span's τ in the same order (-1: not given, to be drawn) and `noise` each entry's ε
// (zeros where its span's τ is -1); both empty: every span is drawn.
constexpr int32_t kContinuousEntry = -2;

struct TokenBatch {
  int64_t rows = 0, len = 0;
  std::vector<int32_t> tokens;
  int64_t latent_dim = 0;
  std::vector<float> latents, noise;
  std::vector<int32_t> span_t;
  int32_t at(int64_t r, int64_t t) const { return tokens[r * len + t]; }
};

// Validates the ids (in the vocabulary, -1 only as trailing padding; mot::Error names
// the row and position otherwise) and fills `out`: modality from each id's vocabulary
// range, causal key ranges that start at the position's document (doc_mask: a
// document starts at each bos_id) and rotary position = index in the row.
void to_batch(const ModelConfig& c, const TokenBatch& tokens, Batch& out);

}  // namespace mot
