#include "mot/model/model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/bf16.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/core/error.hpp"
#include "mot/core/profile.hpp"
#include "mot/model/memory.hpp"

namespace mot {

void LossSums::add(const LossSums& o) {
  loss += o.loss;
  targets += o.targets;
  for (size_t m = 0; m < by_mod.size(); ++m) {
    by_mod[m] += o.by_mod[m];
    targets_by_mod[m] += o.targets_by_mod[m];
  }
}

namespace {
// Runs before any member is built: the parameter table alone walks every layer.
const ModelConfig& fitted(const ModelConfig& c, int64_t rows, int64_t len, bool training, cpu::Precision precision) {
  ensure_model_fits(c, rows, len, training, precision);
  return c;
}
}  // namespace

Model::Model(const ModelConfig& cfg, int64_t max_rows, int64_t max_len, bool training, cpu::Precision precision)
    : cfg_(fitted(cfg, max_rows, max_len, training, precision)),
      table_(build_param_table(cfg)),
      training_(training),
      precision_(precision),
      max_rows_(max_rows),
      max_len_(max_len) {
  max_n_ = max_rows * (max_len - 1);
  // Loss chunk: enough rows to keep the output GEMM efficient, few enough that a
  // chunk of logits stays small (about 8 MiB).
  chunk_ = std::clamp<int64_t>((int64_t{2} << 20) / cfg.vocab_size, 16, 1024);
  Arena measure;
  carve(measure);
  arena_.map(measure.used());
  carve(arena_);
  if (precision_ == cpu::Precision::bf16)
    mm_.set_bf16(wmat_, wmat_ + table_.total, bf16_scratch_[0], bf16_scratch_[1], bf16_scratch_floats_);
  rt_.reserve(cfg, max_rows, max_len);
  // RoPE table in double precision, stored as float.
  const int64_t half = cfg.head_dim() / 2;
  for (int64_t t = 0; t < max_len; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double freq = std::pow(cfg.rope_theta, -2.0 * static_cast<double>(i) / cfg.head_dim());
      ws_.rope_cos[t * half + i] = static_cast<float>(std::cos(t * freq));
      ws_.rope_sin[t * half + i] = static_cast<float>(std::sin(t * freq));
    }
}

void Model::carve(Arena& a) {
  a.reset_cursor();
  const int64_t N = max_n_, d = cfg_.dim, F = cfg_.ffn_hidden, H = cfg_.n_heads, L = cfg_.n_layers;
  const int64_t BHT = max_rows_ * H * (max_len_ - 1), hd = cfg_.head_dim();
  const size_t P = table_.total;
  params_ = a.alloc<float>(P);
  wmat_ = params_;
  if (precision_ == cpu::Precision::bf16) {
    wmat_ = a.alloc<float>(P);
    // Largest activation operand of any GEMM: [N, 2F] / [N, 3d] / [N, E] rows in the
    // layers, a chunk of logits in the head.
    bf16_scratch_floats_ = std::max(N * std::max({2 * F, 3 * d, cfg_.n_experts}), chunk_ * cfg_.vocab_size);
    bf16_scratch_[0] = a.alloc<float>(bf16_scratch_floats_);
    bf16_scratch_[1] = a.alloc<float>(bf16_scratch_floats_);
  }
  if (training_) {
    grads_ = a.alloc<float>(P);
    adam_m_ = a.alloc<float>(P);
    adam_v_ = a.alloc<float>(P);
  }
  const bool post = cfg_.post_norm(), moe = cfg_.has_moe();
  const int64_t E = cfg_.n_experts;
  auto layer = [&] {
    LayerActs s;
    s.rstd1 = a.alloc<float>(N);
    s.rstd2 = a.alloc<float>(N);
    s.qkv = a.alloc<float>(N * 3 * d);
    if (cfg_.qk_norm) s.qk_rstd = a.alloc<float>(N * 2 * H);
    s.Q = a.alloc<float>(BHT * hd);
    s.K = a.alloc<float>(BHT * hd);
    s.V = a.alloc<float>(BHT * hd);
    s.O = a.alloc<float>(BHT * hd);
    s.lse = a.alloc<float>(BHT);
    s.cat = a.alloc<float>(N * d);
    if (post) s.o_raw = a.alloc<float>(N * d);
    s.h = a.alloc<float>(N * d);
    s.ac = a.alloc<float>(N * 2 * F);
    if (post) s.f_raw = a.alloc<float>(N * d);
    if (moe) {
      s.moe_prob = a.alloc<float>(N * E);
      s.moe_pick = a.alloc<int32_t>(N);
      s.moe_slot = a.alloc<int32_t>(N * E);
    }
    return s;
  };
  acts_.assign(L, LayerActs{});
  xs_.assign(L + 1, nullptr);
  if (training_) {
    for (int64_t l = 0; l < L; ++l) acts_[l] = layer();
    for (int64_t l = 0; l <= L; ++l) xs_[l] = a.alloc<float>(N * d);
  } else {  // inference: one activation set, residual ping-pong between two buffers
    LayerActs shared = layer();
    float* ping[2] = {a.alloc<float>(N * d), a.alloc<float>(N * d)};
    for (int64_t l = 0; l < L; ++l) acts_[l] = shared;
    for (int64_t l = 0; l <= L; ++l) xs_[l] = ping[l % 2];
  }
  for (int64_t l = 0; l < L; ++l) acts_[l].x_in = xs_[l];
  ws_.xn = a.alloc<float>(N * d);
  ws_.tmp = a.alloc<float>(N * d);
  ws_.g = a.alloc<float>(N * F);
  ws_.xf = a.alloc<float>(N * d);
  ws_.rstd_f = a.alloc<float>(N);
  ws_.logits = a.alloc<float>(chunk_ * cfg_.vocab_size);
  ws_.row_loss = a.alloc<double>(N);
  ws_.reduce = a.alloc<float>(cpu::kReduceChunks * std::max<int64_t>(d, 2 * hd));
  ws_.rope_cos = a.alloc<float>(max_len_ * (hd / 2));
  ws_.rope_sin = a.alloc<float>(max_len_ * (hd / 2));
  if (moe) {
    ws_.moe_x = a.alloc<float>(N * d);
    ws_.moe_y = a.alloc<float>(N * d);
    ws_.moe_order = a.alloc<int32_t>(E * N);
    if (training_) ws_.moe_dprob = a.alloc<float>(N * E);
  }
  if (training_) {
    ws_.dx = a.alloc<float>(N * d);
    ws_.dA = a.alloc<float>(N * d);
    ws_.dB = a.alloc<float>(N * d);
    ws_.dqkv = a.alloc<float>(N * 3 * d);
    ws_.dac = a.alloc<float>(N * 2 * F);
    ws_.dg = a.alloc<float>(N * F);
    ws_.dQ = a.alloc<float>(BHT * hd);
    ws_.dK = a.alloc<float>(BHT * hd);
    ws_.dV = a.alloc<float>(BHT * hd);
    ws_.dO = a.alloc<float>(BHT * hd);
  }
}

void Model::run(const TokenBatch& batch, bool backward, float grad_scale, LossSums& out) {
  if (backward && !training_) fail("internal: backward on an inference model");
  if (batch.rows > max_rows_ || batch.len > max_len_)
    fail("batch of ", batch.rows, "x", batch.len, " tokens exceeds the model's buffers (", max_rows_, "x", max_len_,
         ")");
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  build_routing(cfg_, batch, rt_);
  if (wmat_ != params_) {  // bf16: this run's weights, rounded once
    prof::Scope scope(prof::RoundBf16);
    cpu::round_bf16_copy(params_, wmat_, static_cast<int64_t>(table_.total));
  }
  const int64_t N = rt_.N, d = cfg_.dim;
  // Embedding (tied across modalities): x0[s] = E[input[s]].
  const float* E = params_ + table_.tok_embeddings;
  float* x0 = xs_[0];
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < N; ++s) std::memcpy(x0 + s * d, E + static_cast<int64_t>(rt_.input[s]) * d, sizeof(float) * d);

  for (int l = 0; l < cfg_.n_layers; ++l) forward_layer(l);
  const auto t1 = clock::now();
  head(backward, grad_scale, out);
  const auto t2 = clock::now();
  times_.forward += std::chrono::duration<double>(t1 - t0).count();
  times_.head += std::chrono::duration<double>(t2 - t1).count();
  if (!backward) return;
  for (int l = cfg_.n_layers - 1; l >= 0; --l) backward_layer(l);
  // Embedding backward, serial over rows: a token may repeat, and a fixed order keeps
  // the sum deterministic.
  float* dE = grads_ + table_.tok_embeddings;
  const float* dx = ws_.dx;
  for (int64_t s = 0; s < N; ++s) {
    float* row = dE + static_cast<int64_t>(rt_.input[s]) * d;
    const float* g = dx + s * d;
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) row[i] += g[i];
  }
  times_.backward += std::chrono::duration<double>(clock::now() - t2).count();
}

// Pre-norm:  h = x + Attn(AttnNorm(x));  x' = h + FFN(FfnNorm(h))
// Post-norm: h = x + AttnNorm(Attn(x));  x' = h + FfnNorm(FFN(h))
void Model::forward_layer(int l) {
  LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const int64_t n = rt_.N * cfg_.dim, d = cfg_.dim;
  float* x_out = xs_[l + 1];
  if (!cfg_.post_norm()) {
    norm_forward(w.attn_norm, a.x_in, ws_.xn, a.rstd1, d);
    attention_forward(l, ws_.xn, ws_.tmp);
    cpu::add(a.x_in, ws_.tmp, a.h, n);
    norm_forward(w.ffn_norm, a.h, ws_.xn, a.rstd2, d);
    ffn_forward(l, ws_.xn, ws_.tmp);
    cpu::add(a.h, ws_.tmp, x_out, n);
  } else {
    attention_forward(l, a.x_in, a.o_raw);
    norm_forward(w.attn_norm, a.o_raw, ws_.tmp, a.rstd1, d);
    cpu::add(a.x_in, ws_.tmp, a.h, n);
    ffn_forward(l, a.h, a.f_raw);
    norm_forward(w.ffn_norm, a.f_raw, ws_.tmp, a.rstd2, d);
    cpu::add(a.h, ws_.tmp, x_out, n);
  }
}

// In: ws_.dx = dL/dx_out. Out: ws_.dx = dL/dx_in.
void Model::backward_layer(int l) {
  LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const int64_t d = cfg_.dim;
  if (!cfg_.post_norm()) {
    // x' = h + FFN(norm(h)): dh = dx' + normᵀ(FFNᵀ(dx'))
    norm_apply(w.ffn_norm, a.h, a.rstd2, ws_.xn, d);
    ffn_backward(l, ws_.xn, ws_.dx, ws_.dA, false);
    norm_backward(w.ffn_norm, a.h, a.rstd2, ws_.dA, ws_.dx, true, d);
    // h = x + Attn(norm(x))
    norm_apply(w.attn_norm, a.x_in, a.rstd1, ws_.xn, d);
    attention_backward(l, ws_.xn, ws_.dx, ws_.dA, false);
    norm_backward(w.attn_norm, a.x_in, a.rstd1, ws_.dA, ws_.dx, true, d);
  } else {
    // x' = h + norm(FFN(h)): dh = dx' + FFNᵀ(normᵀ(dx'))
    norm_backward(w.ffn_norm, a.f_raw, a.rstd2, ws_.dx, ws_.dB, false, d);
    ffn_backward(l, a.h, ws_.dB, ws_.dx, true);
    // h = x + norm(Attn(x))
    norm_backward(w.attn_norm, a.o_raw, a.rstd1, ws_.dx, ws_.dB, false, d);
    attention_backward(l, a.x_in, ws_.dB, ws_.dx, true);
  }
}

}  // namespace mot
