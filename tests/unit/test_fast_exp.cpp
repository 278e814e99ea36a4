#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "mot/backend/cpu/fast_exp.hpp"

TEST(FastExp, MatchesStdExpAcrossTheRange) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
    const double ref = std::exp(static_cast<double>(x));
    const double rel = std::abs(mot::cpu::fast_exp(x) - ref) / ref;
    worst = std::max(worst, rel);
  }
  std::printf("fast_exp worst relative error %.3g\n", worst);
  EXPECT_LT(worst, 3e-7);
}

TEST(FastExp, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(mot::cpu::fast_exp(0.0f), 1.0f);
  EXPECT_EQ(mot::cpu::fast_exp(-inf), 0.0f);
  EXPECT_EQ(mot::cpu::fast_exp(-1000.0f), 0.0f);
  EXPECT_EQ(mot::cpu::fast_exp(1000.0f), inf);
  EXPECT_EQ(mot::cpu::fast_exp(inf), inf);
  EXPECT_TRUE(std::isnan(mot::cpu::fast_exp(std::nanf(""))));
}
