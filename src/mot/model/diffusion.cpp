#include "mot/model/diffusion.hpp"

#include <algorithm>
#include <cmath>

namespace mot {

CosineSchedule::CosineSchedule(int64_t T) {
  const auto g = [](double x) {
    const double c = std::cos((x + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  alpha_bar_.resize(static_cast<size_t>(T));
  double prod = 1.0;
  for (int64_t tau = 0; tau < T; ++tau) {
    const double beta = std::min(1.0 - g(static_cast<double>(tau + 1) / T) / g(static_cast<double>(tau) / T), 0.999);
    prod *= 1.0 - beta;
    alpha_bar_[static_cast<size_t>(tau)] = prod;
  }
}

void CosineSchedule::noise(int64_t tau, const float* z0, const float* eps, int64_t n, float* z) const {
  const double a = std::sqrt(alpha_bar(tau)), b = std::sqrt(1.0 - alpha_bar(tau));
  for (int64_t i = 0; i < n; ++i) z[i] = static_cast<float>(a * z0[i] + b * eps[i]);
}

void time_features(int64_t tau, int64_t d, float* out) {
  const int64_t half = d / 2;
  for (int64_t j = 0; j < half; ++j) {
    const double f = std::pow(10000.0, -static_cast<double>(j) / static_cast<double>(half));
    out[j] = static_cast<float>(std::cos(static_cast<double>(tau) * f));
    out[half + j] = static_cast<float>(std::sin(static_cast<double>(tau) * f));
  }
}

}  // namespace mot
