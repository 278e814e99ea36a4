#include "mot/train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/core/profile.hpp"

namespace mot {

double lr_at(const TrainConfig& t, int64_t step) {
  if (step < t.warmup_steps) return t.lr * static_cast<double>(step + 1) / static_cast<double>(t.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, t.steps - t.warmup_steps));
  const double p = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
  return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + std::cos(M_PI * p));
}

void block_sum_squares(const float* g, size_t lo, size_t hi, double* partial) {
  const int64_t b0 = static_cast<int64_t>(lo / kNormBlock), b1 = static_cast<int64_t>(norm_blocks(hi));
#pragma omp parallel for schedule(static)
  for (int64_t b = b0; b < b1; ++b) {
    const size_t i0 = static_cast<size_t>(b) * kNormBlock, i1 = std::min(hi, i0 + kNormBlock);
    double s = 0.0;
    for (size_t i = i0; i < i1; ++i) s += static_cast<double>(g[i]) * g[i];
    partial[b] = s;
  }
}

double add_in_order(const double* partial, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += partial[i];
  return s;
}

double clip_gradients(Model& m, double max_norm) {
  prof::Scope prof_scope(prof::Optimizer);
  const int64_t P = static_cast<int64_t>(m.table().total);
  double norm;
  if (!m.backend().host_memory()) {  // a device backend sums where the gradients are
    norm = std::sqrt(m.backend().sum_squares(m.grads(), P));
  } else {
    static thread_local std::vector<double> partial;  // sized once per model size: no allocation per step
    partial.resize(norm_blocks(m.table().total));
    block_sum_squares(m.grads(), 0, m.table().total, partial.data());
    norm = std::sqrt(add_in_order(partial.data(), partial.size()));
  }
  if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) m.backend().scale(m.grads(), P, static_cast<float>(coef));
  }
  m.backend().synchronize();
  return norm;
}

void adamw_step(Model& m, const TrainConfig& cfg, double lr, int64_t t) {
  adamw_range(m, cfg, lr, t, 0, m.table().total);
}

void adamw_range(Model& m, const TrainConfig& cfg, double lr, int64_t t, size_t lo, size_t hi) {
  prof::Scope prof_scope(prof::Optimizer);
  AdamWStep s;
  s.lr = static_cast<float>(lr);
  s.beta1 = static_cast<float>(cfg.beta1);
  s.beta2 = static_cast<float>(cfg.beta2);
  s.eps = static_cast<float>(cfg.eps);
  s.one_minus_beta1 = static_cast<float>(1.0 - cfg.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - cfg.beta2);
  s.bias1 = static_cast<float>(1.0 - std::pow(cfg.beta1, static_cast<double>(t)));
  s.bias2 = static_cast<float>(1.0 - std::pow(cfg.beta2, static_cast<double>(t)));
  if (hi - lo > m.moment_floats()) fail("internal: AdamW over ", hi - lo, " values with ", m.moment_floats(), " moments");
  for (const auto& e : m.table().entries) {
    const size_t a = std::max(lo, e.offset), b = std::min(hi, e.offset + e.numel);
    if (a >= b) continue;
    s.weight_decay = e.decay ? static_cast<float>(cfg.weight_decay) : 0.0f;
    m.backend().adamw(m.params() + a, m.grads() + a, m.adam_m() + (a - lo), m.adam_v() + (a - lo),
                      static_cast<int64_t>(b - a), s);
  }
  m.backend().synchronize();  // the host reads and writes these next (gradients zeroed, checkpoints)
}

}  // namespace mot
