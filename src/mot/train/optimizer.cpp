#include "mot/train/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "mot/core/profile.hpp"

namespace mot {

double lr_at(const TrainConfig& t, int64_t step) {
  if (step < t.warmup_steps) return t.lr * static_cast<double>(step + 1) / static_cast<double>(t.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, t.steps - t.warmup_steps));
  const double p = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
  return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + std::cos(M_PI * p));
}

double clip_gradients(Model& m, double max_norm) {
  prof::Scope prof_scope(prof::Optimizer);
  const int64_t P = static_cast<int64_t>(m.table().total);
  const double norm = std::sqrt(m.backend().sum_squares(m.grads(), P));
  if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) m.backend().scale(m.grads(), P, static_cast<float>(coef));
  }
  return norm;
}

void adamw_step(Model& m, const TrainConfig& cfg, double lr, int64_t t) {
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
  for (const auto& e : m.table().entries) {
    s.weight_decay = e.decay ? static_cast<float>(cfg.weight_decay) : 0.0f;
    m.backend().adamw(m.params() + e.offset, m.grads() + e.offset, m.adam_m() + e.offset, m.adam_v() + e.offset,
                      static_cast<int64_t>(e.numel), s);
  }
}

}  // namespace mot
