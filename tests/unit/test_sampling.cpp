// Next-token sampling (src/mot/generate/sampling.hpp) against its definition: greedy is
// the argmax (ties to the lowest id), draws follow softmax(logits / T) restricted to the
// top-k / top-p set and the allowed ranges (checked as frequencies over many seeded
// draws against the exact probabilities), and allowed ranges are never left.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/generate/sampling.hpp"

namespace {

using mot::SamplingOptions;
using mot::TokenRange;

std::vector<double> frequencies(const std::vector<float>& logits, const std::vector<TokenRange>& allowed,
                                const SamplingOptions& o, int draws = 40000) {
  mot::TokenSampler s(static_cast<int64_t>(logits.size()));
  mot::Rng rng(99);
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) f[s.sample(logits.data(), allowed, o, rng)] += 1.0 / draws;
  return f;
}

// softmax(logits / T) over `support`, 0 elsewhere.
std::vector<double> expected(const std::vector<float>& logits, double T, const std::vector<int>& support) {
  std::vector<double> p(logits.size(), 0.0);
  double z = 0;
  for (int i : support) z += p[i] = std::exp(logits[i] / T);
  for (double& v : p) v /= z;
  return p;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  // 40000 draws: the standard error of a share is at most 0.0025; 0.012 is ~5 sigma.
  for (size_t i = 0; i < got.size(); ++i) {
    if (want[i] == 0.0) EXPECT_EQ(got[i], 0.0) << "token " << i << " is outside the support";
    else EXPECT_NEAR(got[i], want[i], 0.012) << "token " << i;
  }
}

const std::vector<float> kLogits = {std::log(0.1f), std::log(0.4f), std::log(0.25f), std::log(0.15f),
                                    std::log(0.1f)};

TEST(Sampling, GreedyIsArgmaxWithLowestIdTies) {
  mot::TokenSampler s(6);
  mot::Rng rng(1);
  const auto before = rng.state();
  const std::vector<float> z = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  EXPECT_EQ(s.sample(z.data(), {}, {}, rng), 1);
  EXPECT_EQ(s.sample(z.data(), {{2, 6}}, {}, rng), 3);   // restricted: best of [2, 6)
  EXPECT_EQ(s.sample(z.data(), {{4, 6}, {0, 1}}, {}, rng), 4);
  EXPECT_EQ(s.sample(z.data(), {}, {2.0, 1, 1.0}, rng), 1);  // top_k 1 is greedy too
  EXPECT_EQ(rng.state(), before);                             // greedy draws nothing
}

TEST(Sampling, TemperatureFollowsSoftmax) {
  expect_close(frequencies(kLogits, {}, {1.0, 0, 1.0}), expected(kLogits, 1.0, {0, 1, 2, 3, 4}));
  expect_close(frequencies(kLogits, {}, {2.0, 0, 1.0}), expected(kLogits, 2.0, {0, 1, 2, 3, 4}));
  expect_close(frequencies(kLogits, {}, {0.5, 0, 1.0}), expected(kLogits, 0.5, {0, 1, 2, 3, 4}));
}

TEST(Sampling, TopKAndTopPKeepTheMostLikelySet) {
  expect_close(frequencies(kLogits, {}, {1.0, 2, 1.0}), expected(kLogits, 1.0, {1, 2}));
  // top_p 0.6: 0.4 < 0.6 <= 0.4 + 0.25, so {1, 2}; 0.7 needs 0.15 more, so {1, 2, 3}.
  expect_close(frequencies(kLogits, {}, {1.0, 0, 0.6}), expected(kLogits, 1.0, {1, 2}));
  expect_close(frequencies(kLogits, {}, {1.0, 0, 0.7}), expected(kLogits, 1.0, {1, 2, 3}));
  expect_close(frequencies(kLogits, {}, {1.0, 0, 0.01}), expected(kLogits, 1.0, {1}));
  // Both: top_k first, then top_p of what is left (0.4 / 0.65 < 0.8).
  expect_close(frequencies(kLogits, {}, {1.0, 2, 0.8}), expected(kLogits, 1.0, {1, 2}));
}

TEST(Sampling, AllowedRangesAreNeverLeft) {
  expect_close(frequencies(kLogits, {{3, 5}}, {1.0, 0, 1.0}), expected(kLogits, 1.0, {3, 4}));
  // top_k 1 inside the allowed set {0, 2}: the better of the two, always.
  expect_close(frequencies(kLogits, {{0, 1}, {2, 3}}, {1.0, 1, 1.0}), expected(kLogits, 1.0, {2}));
  mot::TokenSampler s(64);
  mot::Rng rng(5), noise(6);
  std::vector<float> z(64);
  for (int i = 0; i < 2000; ++i) {
    for (float& v : z) v = static_cast<float>(4.0 * noise.normal());
    const int32_t t = s.sample(z.data(), {{10, 20}, {40, 41}}, {1.5, 0, 0.9}, rng);
    EXPECT_TRUE((t >= 10 && t < 20) || t == 40) << t;
  }
}

TEST(Sampling, SameSeedSameTokens) {
  mot::TokenSampler s(5);
  std::vector<int32_t> a, b, c;
  for (auto* out : {&a, &b}) {
    mot::Rng rng(7);
    for (int i = 0; i < 50; ++i) out->push_back(s.sample(kLogits.data(), {}, {1.0, 0, 1.0}, rng));
  }
  mot::Rng other(8);
  for (int i = 0; i < 50; ++i) c.push_back(s.sample(kLogits.data(), {}, {1.0, 0, 1.0}, other));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Sampling, BadInputIsAnError) {
  EXPECT_THROW(mot::validate_sampling({-1.0, 0, 1.0}), mot::Error);
  EXPECT_THROW(mot::validate_sampling({std::numeric_limits<double>::infinity(), 0, 1.0}), mot::Error);
  EXPECT_THROW(mot::validate_sampling({1.0, -2, 1.0}), mot::Error);
  EXPECT_THROW(mot::validate_sampling({1.0, 0, 0.0}), mot::Error);
  EXPECT_THROW(mot::validate_sampling({1.0, 0, 1.5}), mot::Error);
  EXPECT_NO_THROW(mot::validate_sampling({0.0, 0, 1.0}));
  mot::TokenSampler s(5);
  mot::Rng rng(1);
  EXPECT_THROW(s.sample(kLogits.data(), {{5, 9}}, {}, rng), mot::Error);  // nothing allowed in the vocabulary
  std::vector<float> nan = kLogits;
  nan[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(s.sample(nan.data(), {}, {1.0, 0, 1.0}, rng), mot::Error);
  EXPECT_NO_THROW(s.sample(nan.data(), {{0, 2}}, {1.0, 0, 1.0}, rng));  // the NaN is not allowed here
}

}  // namespace
