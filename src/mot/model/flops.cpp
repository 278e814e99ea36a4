#include "mot/model/flops.hpp"

#include "mot/core/checked.hpp"
#include "mot/core/error.hpp"
#include "mot/model/config.hpp"  // param_count

namespace mot {

ModelCounts count_model(const ModelConfig& c, int64_t seq_len) {
  if (seq_len < 1) fail("sequence length must be a positive integer (got ", seq_len, ")");
  ModelCounts k;
  // Closed form, overflow-checked: building the parameter table would walk every layer.
  const Checked d = c.dim, F = c.ffn_hidden, V = c.vocab_size, L = c.n_layers, hd = c.head_dim();
  // MoE with expert choice at capacity 1: the E experts together process E·floor(n/E)
  // <= n positions of a pool, so a token passes through one expert's FFN on average,
  // plus the router [E, d]. (Hybrid: this is a token of a MoE modality; the others skip
  // the router's E·d.)
  const Checked router = c.has_moe() ? Checked(c.n_experts) * d : Checked(0);
  const Checked matmul_layer = Checked(4) * d * d + Checked(3) * d * F + router;
  const Checked per_layer = matmul_layer + Checked(2) * d + (c.qk_norm ? Checked(2) * hd : Checked(0));
  const Checked total = param_count(c), embedding = V * d;
  const Checked active = L * per_layer + d /*final norm*/ + V * d /*output*/ + d /*embedding row*/;
  const Checked matmul = L * matmul_layer + V * d;
  if (!total.ok() || !active.ok() || !matmul.ok())
    fail("model of ", c.n_layers, " layers, dim ", c.dim, ", ffn_hidden ", c.ffn_hidden, ", vocab_size ", c.vocab_size,
         ": its parameter count overflows 64-bit integers (check n_layers, dim, ffn_hidden, vocab_size)");
  k.params_total = total.value();
  k.params_embedding = embedding.value();
  k.params_active = active.value();
  k.matmul_active = matmul.value();
  k.flops_fwd_matmul = 2.0 * static_cast<double>(k.matmul_active);
  k.flops_fwd_attention = 4.0 * static_cast<double>(c.dim) * (static_cast<double>(seq_len) + 1.0) / 2.0 *
                          static_cast<double>(c.n_layers);
  k.flops_fwd = k.flops_fwd_matmul + k.flops_fwd_attention;
  k.flops_train = 3.0 * k.flops_fwd;
  return k;
}

}  // namespace mot
