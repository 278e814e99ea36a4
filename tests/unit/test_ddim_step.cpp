// The DDIM update (src/mot/generate/diffusion_sampler.hpp, ddim_step) against data whose
// exact noise prediction is known in closed form, so the sampler is checked apart from
// any model: from pure noise over the cosine schedule (SPEC 2b) it must land on a point
// mass exactly for every eta, and reproduce a Gaussian's mean and spread for eta 0
// (the probability-flow ODE) and eta 1 (DDPM's ancestral sampling).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mot/core/rng.hpp"
#include "mot/generate/diffusion_sampler.hpp"
#include "mot/model/diffusion.hpp"

namespace {

constexpr int64_t kT = 1000;

// Data x0 ~ N(mu, s^2) per value. z = sqrt(a) x0 + sqrt(1 - a) eps is Gaussian, so
// E[x0 | z] = mu + sqrt(a) s^2 / (a s^2 + 1 - a) (z - sqrt(a) mu), and the optimal
// noise prediction is (z - sqrt(a) E[x0 | z]) / sqrt(1 - a). s = 0 is a point mass.
double oracle_eps(double z, double a, double mu, double s) {
  const double mean = mu + std::sqrt(a) * s * s / (a * s * s + 1 - a) * (z - std::sqrt(a) * mu);
  return (z - std::sqrt(a) * mean) / std::sqrt(1 - a);
}

// Samples n values from pure noise with `steps` DDIM steps; returns the last step's x0.
std::vector<float> sample(int64_t n, int64_t steps, double eta, double mu, double s, uint64_t seed) {
  const mot::CosineSchedule sched(kT);
  const std::vector<int32_t> taus = mot::ddim_steps(kT, steps);
  mot::Rng rng(seed);
  std::vector<float> z(static_cast<size_t>(n)), x0(static_cast<size_t>(n));
  std::vector<double> eps(static_cast<size_t>(n));
  for (auto& v : z) v = static_cast<float>(rng.normal());
  for (size_t k = 0; k < taus.size(); ++k) {
    const double a = sched.alpha_bar(taus[k]);
    const bool last = k + 1 == taus.size();
    const double a_prev = last ? a : sched.alpha_bar(taus[k + 1]);
    for (int64_t i = 0; i < n; ++i) eps[i] = oracle_eps(z[i], a, mu, s);
    mot::ddim_step(z.data(), eps.data(), n, a, a_prev, last ? 0.0 : eta, rng, x0.data());
  }
  return x0;
}

void moments(const std::vector<float>& x, double& mean, double& sd) {
  double m = 0, q = 0;
  for (float v : x) m += v;
  m /= static_cast<double>(x.size());
  for (float v : x) q += (v - m) * (v - m);
  mean = m;
  sd = std::sqrt(q / static_cast<double>(x.size() - 1));
}

TEST(DdimStep, LandsOnAPointMassForEveryEta) {
  for (double eta : {0.0, 0.5, 1.0})
    for (int64_t steps : {1, 10, 50}) {
      const std::vector<float> x0 = sample(64, steps, eta, 0.37, 0.0, 5);
      for (float v : x0) EXPECT_NEAR(v, 0.37, 1e-5) << "eta " << eta << ", " << steps << " steps";
    }
}

TEST(DdimStep, ReproducesAGaussianWithDeterministicAndAncestralSteps) {
  // mu +- 3.3 s stays inside [-1, 1], so the clamp of x0 hardly acts. 40000 values: the
  // standard error of the mean is 0.0015 and of the spread 0.0011; the tolerances allow
  // those and the discretisation error of 250 of the schedule's 1000 steps.
  const double mu = 0.2, s = 0.24;
  for (double eta : {0.0, 1.0}) {
    double mean = 0, sd = 0;
    moments(sample(40000, 250, eta, mu, s, 11), mean, sd);
    EXPECT_NEAR(mean, mu, 0.006) << "eta " << eta;
    EXPECT_NEAR(sd, s, 0.012) << "eta " << eta;
  }
}

TEST(DdimStep, EtaZeroIsDeterministicAndDrawsNothing) {
  const mot::CosineSchedule sched(kT);
  const double a = sched.alpha_bar(600), a_prev = sched.alpha_bar(500);
  std::vector<float> z = {0.3f, -1.2f, 2.0f}, x0(3);
  const std::vector<double> eps = {0.1, -0.4, 1.5};
  mot::Rng rng(3), untouched(3);
  mot::ddim_step(z.data(), eps.data(), 3, a, a_prev, 0.0, rng, x0.data());
  EXPECT_EQ(rng.next(), untouched.next());
  // eta 0 with an unclamped x0: z' = sqrt(a') x0 + sqrt(1 - a') eps (Song et al. eq. 12).
  const double z0 = 0.3, x = (z0 - std::sqrt(1 - a) * 0.1) / std::sqrt(a);
  EXPECT_NEAR(x0[0], x, 1e-6);
  EXPECT_NEAR(z[0], std::sqrt(a_prev) * x + std::sqrt(1 - a_prev) * 0.1, 1e-6);
  // A clamped x0 lies in [-1, 1] and z' agrees with it: the noise direction is re-derived.
  for (float v : x0) EXPECT_LE(std::fabs(v), 1.0f);
}

TEST(DdimStep, EtaOneAddsThePosteriorSpread) {
  // Same z and eps, two noise streams: the spread between the results is the DDPM
  // posterior's sigma = sqrt((1 - a') / (1 - a)) sqrt(1 - a / a') (Song et al. eq. 16).
  const mot::CosineSchedule sched(kT);
  const double a = sched.alpha_bar(400), a_prev = sched.alpha_bar(380);
  const double sigma = std::sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev));
  const int64_t n = 40000;
  std::vector<float> z1(n, 0.1f), z2(n, 0.1f), x0(n);
  const std::vector<double> eps(n, 0.2);
  mot::Rng r1(1), r2(2);
  mot::ddim_step(z1.data(), eps.data(), n, a, a_prev, 1.0, r1, x0.data());
  mot::ddim_step(z2.data(), eps.data(), n, a, a_prev, 1.0, r2, x0.data());
  std::vector<float> d(n);
  for (int64_t i = 0; i < n; ++i) d[i] = z1[i] - z2[i];
  double mean = 0, sd = 0;
  moments(d, mean, sd);
  EXPECT_NEAR(sd, std::sqrt(2.0) * sigma, 0.02 * std::sqrt(2.0) * sigma);
  EXPECT_NEAR(mean, 0.0, 0.03 * sigma);
}

}  // namespace
