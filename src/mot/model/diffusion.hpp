// The Transfusion setting's diffusion pieces that are pure functions of the config
// (SPEC 2b): the cosine noise schedule and the sinusoidal timestep features φ(τ).
// Both are computed in float64; training, evaluation and DDIM sampling share them.
#pragma once
#include <cstdint>
#include <vector>

namespace mot {

class CosineSchedule {
 public:
  explicit CosineSchedule(int64_t steps);  // T = diffusion_steps
  int64_t steps() const { return static_cast<int64_t>(alpha_bar_.size()); }
  // ᾱ_τ = Π_{j<=τ} (1 - β_j), τ in [0, T-1].
  double alpha_bar(int64_t tau) const { return alpha_bar_[static_cast<size_t>(tau)]; }
  // z = sqrt(ᾱ_τ)·z0 + sqrt(1 - ᾱ_τ)·ε over n values, in float64 then rounded.
  void noise(int64_t tau, const float* z0, const float* eps, int64_t n, float* z) const;

 private:
  std::vector<double> alpha_bar_;
};

// φ(τ)_j = cos(τ f_j) for j < d/2, sin(τ f_(j - d/2)) after, f_j = 10000^(-j / (d/2)).
void time_features(int64_t tau, int64_t d, float* out);

}  // namespace mot
