#include "mot/model/io.hpp"

#include <algorithm>

#include "mot/core/error.hpp"
#include "mot/model/diffusion.hpp"

namespace mot {

void TokenEmbedding::forward(const AdapterContext& c, int64_t s0, int64_t s1, Mat x) {
  c.be.embed_forward(c.rt.tables.input + s0, c.params + c.table.tok_embeddings, x.slice(s0, s1));
}

void TokenEmbedding::backward(const AdapterContext& c, int64_t s0, int64_t s1, ConstMat dx) {
  c.be.embed_backward(c.rt.tables.input + s0, dx.slice(s0, s1), c.grads + c.table.tok_embeddings);
}

void ContinuousInput::forward(const AdapterContext& c, int64_t s0, int64_t s1, Mat x) {
  const Batch& B = c.batch;
  const int64_t n = s1 - s0, D = B.vector_dim, d = x.cols;
  const ContinuousOffsets& w = c.table.continuous[m_];
  if (D != latent_dim_ || B.diffusion_t.empty())
    fail("batch: continuous positions need ", latent_dim_, " values and a diffusion step each (got ", D, ")");
  ContinuousBuffers& cb = c.cont;
  host_z_.resize(static_cast<size_t>(n * D));
  host_eps_.assign(B.noise.empty() ? 0 : static_cast<size_t>(n * D), 0.0f);
  host_span_of_.resize(static_cast<size_t>(n));
  host_seg_.clear();
  host_phi_.clear();
  // One span per image: consecutive rows of one batch row with one key range end.
  int64_t prev = -1;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = c.rt.perm[s0 + j];
    const bool same = prev >= 0 && i == prev + 1 && i / B.len == prev / B.len && B.kv_hi[i] == B.kv_hi[prev];
    if (!same) {
      host_seg_.push_back(static_cast<int32_t>(j));
      host_phi_.resize(host_phi_.size() + static_cast<size_t>(d));
      time_features(B.diffusion_t[i], d, host_phi_.data() + host_phi_.size() - d);
    } else if (B.diffusion_t[i] != B.diffusion_t[prev]) {
      fail("batch: positions of one image span have different diffusion steps (", B.diffusion_t[prev], ", ",
           B.diffusion_t[i], ")");
    }
    host_span_of_[j] = static_cast<int32_t>(host_seg_.size() - 1);
    std::copy_n(B.vector.data() + i * D, D, host_z_.data() + j * D);
    if (!B.noise.empty()) std::copy_n(B.noise.data() + i * D, D, host_eps_.data() + j * D);
    prev = i;
  }
  cb.spans = static_cast<int64_t>(host_seg_.size());
  host_seg_.push_back(static_cast<int32_t>(n));
  c.be.upload(host_z_.data(), cb.z.data, sizeof(float) * n * D);
  if (!host_eps_.empty()) c.be.upload(host_eps_.data(), cb.eps.data, sizeof(float) * n * D);
  c.be.upload(host_phi_.data(), cb.phi.data, sizeof(float) * cb.spans * d);
  c.be.upload(host_span_of_.data(), cb.span_of, sizeof(int32_t) * n);
  c.be.upload(host_seg_.data(), cb.span_seg, sizeof(int32_t) * (cb.spans + 1));
  // temb per span, then x = P_in z + temb[span]
  const int64_t S = cb.spans;
  c.be.linear_forward(cb.phi.slice(0, S), c.weights + w.time_w1, cb.t_h.slice(0, S));
  c.be.silu_forward(cb.t_h.slice(0, S), cb.t_act.slice(0, S));
  c.be.linear_forward(cb.t_act.slice(0, S), c.weights + w.time_w2, cb.t_emb.slice(0, S));
  const Mat xs = x.slice(s0, s1), bcast = c.scratch.slice(0, n);
  c.be.linear_forward(cb.z.slice(0, n), c.weights + w.patch_in, xs);
  c.be.gather_rows(cb.t_emb.slice(0, S), cb.span_of, bcast);
  c.be.add(xs, bcast, xs);
}

void ContinuousInput::backward(const AdapterContext& c, int64_t s0, int64_t s1, ConstMat dx) {
  const int64_t n = s1 - s0;
  const ContinuousOffsets& w = c.table.continuous[m_];
  ContinuousBuffers& cb = c.cont;
  const int64_t S = cb.spans;
  const ConstMat dxs = dx.slice(s0, s1);
  c.be.linear_backward_weight(dxs, cb.z.slice(0, n), c.grads + w.patch_in);
  const Mat demb = cb.t_emb.slice(0, S), dact = cb.t_dact.slice(0, S);  // t_emb's values are spent
  c.be.sum_row_segments(dxs, cb.span_seg, demb);
  c.be.linear_backward_weight(demb, cb.t_act.slice(0, S), c.grads + w.time_w2);
  c.be.linear_backward_input(demb, c.weights + w.time_w2, dact, false);
  c.be.silu_backward(cb.t_h.slice(0, S), dact, dact);
  c.be.linear_backward_weight(dact, cb.phi.slice(0, S), c.grads + w.time_w1);
}

void DiffusionLoss::run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, const LossScale& scale) {
  const int64_t n = s1 - s0;
  const float* P_out = c.weights + c.table.continuous[m_].patch_out;
  const ConstMat xf = c.final_normed.slice(s0, s1);
  const Mat pred = c.cont.pred.slice(0, n);
  c.be.linear_forward(xf, P_out, pred);
  c.be.squared_error(pred, c.cont.eps.slice(0, n), scale.diffusion, backward, c.row_loss + s0);
  if (backward) {
    c.be.linear_backward_input(pred, P_out, c.d_final_normed.slice(s0, s1), false);
    c.be.linear_backward_weight(pred, xf, c.grads + c.table.continuous[m_].patch_out);
  }
}

void NextTokenLoss::run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, const LossScale& scale) {
  const float grad_scale = scale.lm;
  const float* Wout = c.weights + c.table.output;
  const int64_t chunk = c.logits.rows;
  for (int64_t r0 = s0; r0 < s1; r0 += chunk) {
    const int64_t r1 = std::min(s1, r0 + chunk);
    const Mat logits = c.logits.slice(0, r1 - r0);
    const ConstMat xf = c.final_normed.slice(r0, r1);
    c.be.linear_forward(xf, Wout, logits);
    c.be.cross_entropy(logits, c.rt.tables.target + r0, grad_scale, backward, c.row_loss + r0);
    if (backward) {
      c.be.linear_backward_input(logits, Wout, c.d_final_normed.slice(r0, r1), false);
      c.be.linear_backward_weight(logits, xf, c.grads + c.table.output);
    }
  }
}

std::vector<std::shared_ptr<InputAdapter>> make_input_adapters(const ModelConfig& c) {
  const auto tokens = std::make_shared<TokenEmbedding>();
  std::vector<std::shared_ptr<InputAdapter>> out(c.modalities.size(), tokens);
  for (int m = 0; m < c.n_modalities(); ++m)
    if (c.modalities[m].continuous) out[m] = std::make_shared<ContinuousInput>(m, c.modalities[m].latent_dim());
  return out;
}

std::vector<std::shared_ptr<Objective>> make_objectives(const ModelConfig& c) {
  const auto next_token = std::make_shared<NextTokenLoss>();
  std::vector<std::shared_ptr<Objective>> out(c.modalities.size(), next_token);
  for (int m = 0; m < c.n_modalities(); ++m)
    if (c.modalities[m].continuous) out[m] = std::make_shared<DiffusionLoss>(m);
  return out;
}

}  // namespace mot
