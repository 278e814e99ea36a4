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
struct TokenBatch {
  int64_t rows = 0, len = 0;
  std::vector<int32_t> tokens;
  int32_t at(int64_t r, int64_t t) const { return tokens[r * len + t]; }
};

// Validates the ids (in the vocabulary, -1 only as trailing padding; mot::Error names
// the row and position otherwise) and fills `out`: modality from each id's vocabulary
// range, causal key ranges that start at the position's document (doc_mask: a
// document starts at each bos_id) and rotary position = index in the row.
void to_batch(const ModelConfig& c, const TokenBatch& tokens, Batch& out);

}  // namespace mot
