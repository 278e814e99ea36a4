// Modality routing, built once per batch (DESIGN.md "the modality routing trick").
// All valid positions of the batch are stable-sorted by modality. The residual stream
// lives in that sorted order through the whole network, so every per-modality
// operation (norms, projections, FFN, final norm, loss) runs on one contiguous block
// of rows. Only attention reads sequence order, through `perm`.
#pragma once
#include <cstdint>
#include <climits>
#include <vector>

#include "mot/backend/backend.hpp"
#include "mot/model/batch.hpp"
#include "mot/model/config.hpp"

namespace mot {

struct RowGroup {
  int64_t begin = 0, end = 0;  // sorted rows [begin, end)
  int copy = 0;                // weight copy applied to them
};

// Expert choice (SPEC section 2, MoE): a pool is one batch row's positions in one MoE
// row group (arch = "moe": the whole row; hybrid: the row's positions of that modality).
// Positions are the row's inputs: its last valid token is only a target and takes no
// part in the choice.
using MoePool = ExpertPool;

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

// The tables of a Routing that kernels read, as pointers the backend can dereference:
// the Routing's own vectors for a host backend (build_routing sets them), copies in the
// model's arena for a device backend (Model::upload_routing replaces them).
struct KernelTables {
  const int32_t* perm = nullptr, *key_slot = nullptr, *input = nullptr, *target = nullptr, *pos = nullptr;
  const int32_t* pool_rows = nullptr;
  const ExpertPool* pools = nullptr;
  KeyRanges keys;
};

struct Routing {
  int64_t B = 0, T = 0, N = 0;     // rows, positions per row (max), valid positions
  int64_t Tk = 0;                  // keys per row of the attention tensors (T, or a KV cache's capacity)
  std::vector<int32_t> row_len;    // valid positions of each row (a prefix)
  std::vector<int32_t> perm;       // sorted s -> b*T + t (its query slot)
  std::vector<int32_t> key_slot;   // sorted s -> b*Tk + past[b] + t (where its key and value go)
  std::vector<int32_t> inv;        // b*T + t -> sorted s, -1 for padding
  std::vector<int32_t> input;      // sorted s -> input token
  std::vector<int32_t> target;     // sorted s -> target token, -1 if none
  std::vector<int32_t> target_mod; // sorted s -> modality of the target, -1 if none
  std::vector<int32_t> pos;        // sorted s -> RoPE position
  KeyRanges keys;                  // the batch's key ranges, [B * T] in sequence order
  std::vector<int64_t> mod_begin;  // M + 1 offsets into sorted order, by input modality
  std::vector<int32_t> key_len;    // [B] keys of each row: past[b] + row_len[b]
  std::vector<RowGroup> groups[kComponents];  // contiguous rows sharing one weight copy
  int64_t n_targets = 0;
  std::vector<int64_t> targets_by_mod;
  // MoE pools, one entry per ffn group whose weight copy is a mixture of experts.
  std::vector<MoeGroup> moe;
  std::vector<MoePool> pools;
  std::vector<int32_t> pool_rows;  // [N]: within each MoE group's rows, a permutation of them
  KernelTables tables;             // what the kernels read (see KernelTables)

  // Sizes every vector for the largest batch so that later builds do not allocate.
  void reserve(const ModelConfig& c, int64_t rows, int64_t len);
};

// Checks the batch (modalities, token ids, key ranges in range; mot::Error otherwise)
// and fills `r`. `r.keys` points into `batch`, which must outlive the routing's use.
// key_capacity: keys per row of an attached KV cache (batch.past allowed), 0 without.
// positions: rotary positions must lie in [0, positions) (the model's RoPE table).
void build_routing(const ModelConfig& c, const Batch& batch, Routing& r, int64_t key_capacity = 0,
                   int64_t positions = INT32_MAX);

}  // namespace mot
