// Output head: per-modality final RMSNorm, the tied output projection and the
// cross-entropy, fused and chunked so that only `chunk_` rows of logits ever exist.
// With backward, each chunk's logit gradient is turned into d(xf) and d(Out) right
// away, then the final norm's backward fills ws_.dx.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/fast_exp.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/core/error.hpp"
#include "mot/core/profile.hpp"
#include "mot/model/model.hpp"

namespace mot {

void Model::head(bool backward, float grad_scale, LossSums& out) {
  const int64_t N = rt_.N, d = cfg_.dim, V = cfg_.vocab_size;
  const float* x = xs_[cfg_.n_layers];
  norm_forward(table_.final_norm, x, ws_.xf, ws_.rstd_f, d);
  const float* Wout = wmat_ + table_.output;
  float* dxf = backward ? ws_.dA : nullptr;
  for (int64_t r0 = 0; r0 < N; r0 += chunk_) {
    const int64_t r1 = std::min(N, r0 + chunk_), n = r1 - r0;
    float* logits = ws_.logits;
    mm_.nt(n, V, d, ws_.xf + r0 * d, d, Wout, d, logits, V, 0.0f);
    {
      prof::Scope softmax_scope(prof::LossSoftmax);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        float* z = logits + i * V;
        const int32_t tgt = rt_.target[r0 + i];
        if (tgt < 0) {
          ws_.row_loss[r0 + i] = 0.0;
          if (backward) std::memset(z, 0, sizeof(float) * V);
          continue;
        }
        float mx = z[0];
#pragma omp simd reduction(max : mx)
        for (int64_t j = 1; j < V; ++j) mx = std::max(mx, z[j]);
        const float zt = z[tgt];
        // Exponentials computed once, in place when the gradient needs them.
        float sum = 0.0f;
        if (backward) {
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < V; ++j) {
            z[j] = cpu::fast_exp(z[j] - mx);
            sum += z[j];
          }
        } else {
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < V; ++j) sum += cpu::fast_exp(z[j] - mx);
        }
        ws_.row_loss[r0 + i] = static_cast<double>(mx) + std::log(static_cast<double>(sum)) - zt;
        if (backward) {  // d loss / d z = softmax(z) - onehot(target), scaled
          const float k = grad_scale / sum;
#pragma omp simd
          for (int64_t j = 0; j < V; ++j) z[j] *= k;
          z[tgt] -= grad_scale;
        }
      }
    }
    if (backward) {
      mm_.nn(n, d, V, logits, V, Wout, d, dxf + r0 * d, d, 0.0f);
      mm_.tn(V, d, n, logits, V, ws_.xf + r0 * d, d, grads_ + table_.output, d, 1.0f);
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
  if (backward) norm_backward(table_.final_norm, x, ws_.rstd_f, dxf, ws_.dx, false, d);
}

}  // namespace mot
