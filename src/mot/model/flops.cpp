#include "mot/model/flops.hpp"

#include "mot/model/params.hpp"

namespace mot {

ModelCounts count_model(const ModelConfig& c, int64_t seq_len) {
  ModelCounts k;
  const ParamTable t = build_param_table(c);
  const int64_t d = c.dim, F = c.ffn_hidden, V = c.vocab_size, L = c.n_layers, hd = c.head_dim();
  k.params_total = static_cast<int64_t>(t.total);
  k.params_embedding = V * d;
  // MoE with expert choice at capacity 1: the E experts together process E·floor(n/E)
  // <= n positions of a pool, so a token passes through one expert's FFN on average,
  // plus the router [E, d]. (Hybrid: this is a token of a MoE modality; the others skip
  // the router's E·d.)
  const int64_t router = c.has_moe() ? c.n_experts * d : 0;
  const int64_t per_layer = 4 * d * d + 3 * d * F + router + 2 * d + (c.qk_norm ? 2 * hd : 0);
  k.params_active = L * per_layer + d /*final norm*/ + V * d /*output*/ + d /*embedding row*/;
  k.matmul_active = L * (4 * d * d + 3 * d * F + router) + V * d;
  k.flops_fwd_matmul = 2.0 * static_cast<double>(k.matmul_active);
  k.flops_fwd_attention = 4.0 * d * (static_cast<double>(seq_len) + 1.0) / 2.0 * L;
  k.flops_fwd = k.flops_fwd_matmul + k.flops_fwd_attention;
  k.flops_train = 3.0 * k.flops_fwd;
  return k;
}

}  // namespace mot
