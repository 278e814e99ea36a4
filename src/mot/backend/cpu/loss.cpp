// Next-token cross-entropy on a chunk of logit rows, in place: the model runs the
// output projection a chunk at a time, so only a chunk of logits ever exists.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/cpu_backend.hpp"
#include "mot/backend/cpu/fast_exp.hpp"
#include "mot/core/profile.hpp"

namespace mot::cpu {

void CpuBackend::cross_entropy(Mat logits, const int32_t* target, float grad_scale, bool backward,
                               double* row_loss) {
  prof::Scope softmax_scope(prof::LossSoftmax);
  const int64_t n = logits.rows, V = logits.cols;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float* z = logits.row(i);
    const int32_t tgt = target[i];
    if (tgt < 0) {
      row_loss[i] = 0.0;
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
        z[j] = fast_exp(z[j] - mx);
        sum += z[j];
      }
    } else {
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < V; ++j) sum += fast_exp(z[j] - mx);
    }
    row_loss[i] = static_cast<double>(mx) + std::log(static_cast<double>(sum)) - zt;
    if (backward) {  // d loss / d z = softmax(z) - onehot(target), scaled
      const float k = grad_scale / sum;
#pragma omp simd
      for (int64_t j = 0; j < V; ++j) z[j] *= k;
      z[tgt] -= grad_scale;
    }
  }
}

}  // namespace mot::cpu
