// The parameter table: every tensor of SPEC section 3 as a named view into one flat
// float buffer. The same offsets index the gradient and AdamW moment buffers, so the
// optimizer is one loop and a future all-reduce is one call.
//
// Layout choices that make the hot path simple: per layer and weight copy, wq/wk/wv
// are adjacent (one [3d, d] matrix, one GEMM) and w1/w3 are adjacent ([2F, d]), also
// per MoE expert.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mot/model/config.hpp"

namespace mot {

struct ParamEntry {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0, numel = 0;
  bool decay = false;  // AdamW weight decay: matrices except the embedding table
};

constexpr size_t kNoTensor = static_cast<size_t>(-1);

// The tensors of one mixture-of-experts FFN weight copy.
struct ExpertOffsets {
  size_t router = kNoTensor;   // [E, d]
  std::vector<size_t> w13, w2; // per expert: [2F, d] (w1 then w3), [d, F]
};

struct LayerOffsets {
  std::vector<size_t> wqkv, wo, q_norm, k_norm;  // one per attention weight copy
  std::vector<size_t> attn_norm, ffn_norm;       // one per norm weight copy
  std::vector<size_t> w13, w2;                   // one per ffn weight copy (kNoTensor for a MoE copy)
  std::vector<ExpertOffsets> experts;            // one per ffn weight copy (router kNoTensor: SwiGLU)
};

// A continuous modality's own tensors (SPEC 2b), whatever `untie` says.
struct ContinuousOffsets {
  size_t patch_in = kNoTensor;   // [d, latent_dim]
  size_t patch_out = kNoTensor;  // [latent_dim, d]
  size_t time_w1 = kNoTensor, time_w2 = kNoTensor;  // [d, d] each
};

struct ParamTable {
  std::vector<ParamEntry> entries;
  size_t total = 0;  // floats
  size_t tok_embeddings = 0, output = 0;
  std::vector<ContinuousOffsets> continuous;  // one per modality (kNoTensor for discrete ones)
  std::vector<size_t> final_norm;  // one per norm weight copy
  std::vector<LayerOffsets> layers;

  const ParamEntry* find(const std::string& name) const;
};

ParamTable build_param_table(const ModelConfig& c);

// Deterministic initialisation: each tensor seeded from (seed, its name), so a tensor's
// values do not depend on which other tensors exist. Matrices ~ N(0, 0.02) (output
// projections wo and w2 scaled by 1/sqrt(2 n_layers)), norm weights 1.
void init_params(const ModelConfig& c, const ParamTable& t, float* params, uint64_t seed);

}  // namespace mot
