// Output head: the per-modality final RMSNorm, then each modality's objective
// (model/io.hpp) on its block of rows; the loss sums are then added up by the modality
// of each target, in a fixed order. With backward, the objectives' d(final_normed) goes
// through the final norm's backward into ws_.d_stream.
#include <cmath>

#include "mot/core/error.hpp"
#include "mot/model/model.hpp"

namespace mot {

void Model::head(bool backward, const LossScale& scale, LossSums& out) {
  const int64_t N = rt_.N;
  const ConstMat x = xs_[cfg_.n_layers].slice(0, N);
  const Mat xf = ws_.final_normed.slice(0, N);
  norm_forward(table_.final_norm, x, xf, ws_.rstd_f);
  const Mat dxf = backward ? ws_.d_branch.slice(0, N) : Mat{};
  const ObjectiveContext c{*be_,  rt_, ws_.continuous, table_, wmat_, backward ? grads_ : nullptr,
                           xf,    dxf, ws_.logits,     ws_.row_loss};
  for_each_block(objectives_, rt_, [&](Objective& o, int64_t s0, int64_t s1) {
    o.run(c, s0, s1, backward, scale);
  });
  be_->synchronize();  // the losses are read on the host
  // Continuous positions: their squared errors, by position (SPEC 2b).
  for (int m = 0; m < cfg_.n_modalities(); ++m) {
    if (!cfg_.modalities[m].continuous) continue;
    for (int64_t s = rt_.mod_begin[m]; s < rt_.mod_begin[m + 1]; ++s) {
      const double l = ws_.row_loss[s];
      if (!std::isfinite(l)) throw NonFiniteLoss(cat("loss is not finite (", l, ") at a ", cfg_.modalities[m].name, " position"));
      out.diffusion += l;
      out.by_mod[m] += l;
      out.targets_by_mod[m]++;
      out.diffusion_values += cfg_.modalities[m].latent_dim();
    }
  }
  // Loss sums in a fixed order (deterministic), by the modality of each target.
  for (int64_t s = 0; s < N; ++s) {
    const int m = rt_.target_mod[s];
    if (m < 0) continue;
    const double l = ws_.row_loss[s];
    if (!std::isfinite(l)) throw NonFiniteLoss(cat("loss is not finite (", l, ") at a ", cfg_.modalities[m].name, " target"));
    out.loss += l;
    out.by_mod[m] += l;
    out.targets++;
    out.targets_by_mod[m]++;
  }
  if (backward) norm_backward(table_.final_norm, x, ws_.rstd_f, dxf, ws_.d_stream.slice(0, N), false);
}

void Model::continuous_outputs(const Batch& batch, float* eps) {
  const int m = cfg_.continuous_modality();
  if (m < 0) fail("internal: continuous_outputs on a model without a continuous modality");
  forward(batch);
  const int64_t N = rt_.N, s0 = rt_.mod_begin[m], s1 = rt_.mod_begin[m + 1], D = cfg_.latent_dim();
  const Mat xf = ws_.final_normed.slice(0, N);
  norm_forward(table_.final_norm, xs_[cfg_.n_layers].slice(0, N), xf, ws_.rstd_f);
  // The continuous block's sorted rows are the batch's continuous positions in batch
  // order (the routing sort is stable).
  const Mat pred = ws_.continuous.pred.slice(0, s1 - s0);
  be_->linear_forward(xf.slice(s0, s1), wmat_ + table_.continuous[m].patch_out, pred);
  be_->download(pred.data, eps, sizeof(float) * (s1 - s0) * D);
}

}  // namespace mot
