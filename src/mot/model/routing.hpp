// Modality routing, built once per batch (DESIGN.md "the modality routing trick").
// All valid positions of the batch are stable-sorted by modality. The residual stream
// lives in that sorted order through the whole network, so every per-modality
// operation (norms, projections, FFN, final norm, loss) runs on one contiguous block
// of rows. Only attention reads sequence order, through `perm`.
#pragma once
#include <cstdint>
#include <vector>

#include "mot/model/config.hpp"

namespace mot {

// Token rows as they come from data: rows x len ids, -1 padding only at row ends.
// Position t of a row is an input; its target is token t+1. The last valid token of a
// row is only a target (its own logits would have no target), so a row of n valid
// tokens has n - 1 positions.
struct TokenBatch {
  int64_t rows = 0, len = 0;
  std::vector<int32_t> tokens;
  int32_t at(int64_t r, int64_t t) const { return tokens[r * len + t]; }
};

struct RowGroup {
  int64_t begin = 0, end = 0;  // sorted rows [begin, end)
  int copy = 0;                // weight copy applied to them
};

// Expert choice (SPEC section 2, MoE): a pool is one batch row's positions in one MoE
// row group (arch = "moe": the whole row; hybrid: the row's positions of that modality).
// Positions are the row's inputs: its last valid token is only a target and takes no
// part in the choice.
struct MoePool {
  int64_t begin = 0, size = 0;  // its sorted rows are pool_rows[begin, begin + size), in position order
  int64_t pick0 = 0;            // where its picks start in each expert's pick list of the group
};

struct MoeGroup {
  int64_t begin = 0, end = 0;  // the ffn row group (sorted rows)
  int copy = 0;                // its ffn weight copy (a mixture of experts)
  int64_t pool0 = 0, pool1 = 0;  // its pools: pools[pool0, pool1)
  // Positions each expert picks in the group: the sum over its pools of
  // k = floor(capacity * size / E), capacity 1. The same for every expert, and
  // E * k <= end - begin, so the experts' picks fit in the group's own rows of any
  // per-row buffer.
  int64_t k = 0;
};

struct Routing {
  int64_t B = 0, T = 0, N = 0;     // rows, positions per row (max), valid positions
  std::vector<int32_t> row_len;    // valid positions of each row (a prefix)
  std::vector<int32_t> perm;       // sorted s -> b*T + t
  std::vector<int32_t> inv;        // b*T + t -> sorted s, -1 for padding
  std::vector<int32_t> input;      // sorted s -> input token
  std::vector<int32_t> target;     // sorted s -> target token, -1 if none
  std::vector<int32_t> target_mod; // sorted s -> modality of the target, -1 if none
  std::vector<int32_t> pos;        // sorted s -> RoPE position t
  std::vector<int32_t> kv_lo, kv_hi;  // b*T + t -> the keys it attends to: [doc start, t + 1)
  std::vector<int64_t> mod_begin;  // M + 1 offsets into sorted order, by input modality
  std::vector<RowGroup> groups[kComponents];  // contiguous rows sharing one weight copy
  int64_t n_targets = 0;
  std::vector<int64_t> targets_by_mod;
  // MoE pools, one entry per ffn group whose weight copy is a mixture of experts.
  std::vector<MoeGroup> moe;
  std::vector<MoePool> pools;
  std::vector<int32_t> pool_rows;  // [N]: within each MoE group's rows, a permutation of them

  // Sizes every vector for the largest batch so that later builds do not allocate.
  void reserve(const ModelConfig& c, int64_t rows, int64_t len);
};

// Validates the tokens (ids in the vocabulary, -1 only as trailing padding) and fills
// `r`. Throws mot::Error on bad tokens.
void build_routing(const ModelConfig& c, const TokenBatch& batch, Routing& r);

}  // namespace mot
