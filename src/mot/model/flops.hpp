// Parameter and FLOPs accounting (DESIGN.md "FLOPs accounting"), shared by `mot info`,
// the benchmarks and the comparison harness.
#pragma once
#include <cstdint>

#include "mot/model/config.hpp"

namespace mot {

struct ModelCounts {
  int64_t params_total = 0;      // every tensor
  int64_t params_embedding = 0;  // tok_embeddings
  int64_t params_active = 0;     // weights one token passes through (its modality's copies,
                                 // the output head, its embedding row)
  int64_t matmul_active = 0;     // N_active of the FLOPs formula: L(4d² + 3dF) + V d;
                                 // MoE adds the router, L E d (capacity 1: one expert per token on average)
  double flops_fwd_matmul = 0;   // 2 N_active per token
  double flops_fwd_attention = 0;// 4 d T_avg L per token, T_avg = (T + 1) / 2 (causal)
  double flops_fwd = 0;
  double flops_train = 0;        // 3x forward
};

ModelCounts count_model(const ModelConfig& c, int64_t seq_len);

}  // namespace mot
