// The Transfusion setting's model mechanics (SPEC 2b) that the PyTorch parity tests
// cannot see from the outside: the attention mask (full inside an image span, causal
// elsewhere) read off per-position losses, the noising of inputs (z from z0, ε and τ),
// the batch checks, and the per-objective gradient scales.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/format/token_batch.hpp"
#include "mot/model/diffusion.hpp"
#include "mot/model/model.hpp"
#include "mot/model/params.hpp"

namespace {

using mot::ModelConfig;
using mot::TokenBatch;

constexpr int32_t C = mot::kContinuousEntry;

// d 32, text [0, 40) (bos 1), image: 4x4x3 images in 2x2 patches -> 4 positions of 12.
ModelConfig make(const std::string& arch, bool doc_mask = true) {
  ModelConfig c;
  c.arch = arch;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.ffn_hidden = 48;
  c.vocab_size = 40;
  c.max_seq_len = 64;
  c.bos_id = 1;
  c.doc_mask = doc_mask;
  mot::Modality text{"text", 0, 40};
  mot::Modality image;
  image.name = "image";
  image.continuous = true;
  image.patch = 2;
  image.channels = 3;
  image.image_size = 4;
  c.modalities = {text, image};
  if (arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  c.validate("test");
  return c;
}

// <bos> caption <boi> image <eoi> text: positions 3..6 are the image.
const std::vector<int32_t> kRow = {1, 5, 9, 2, C, C, C, C, 3, 7, 11, 13};
constexpr int64_t kImg0 = 4, kImg1 = 8;

TokenBatch batch_of(const std::vector<int32_t>& row, uint64_t seed, int32_t tau) {
  TokenBatch b;
  b.rows = 1;
  b.len = static_cast<int64_t>(row.size());
  b.tokens = row;
  b.latent_dim = 12;
  mot::Rng rng(seed);
  for (int32_t v : row)
    if (v == C)
      for (int j = 0; j < 12; ++j) {
        b.latents.push_back(static_cast<float>(2 * rng.uniform() - 1));
        b.noise.push_back(static_cast<float>(rng.normal()));
      }
  b.span_t = {tau};
  return b;
}

struct Losses {
  std::vector<double> at;  // per position
  mot::LossSums sums;
};

Losses run(mot::Model& m, const TokenBatch& tb) {
  Losses out;
  out.sums.reset(m.config().n_modalities());
  m.run(tb, false, 0.0f, out.sums);
  for (int64_t t = 0; t + 1 < tb.len; ++t) out.at.push_back(m.position_loss(0, t));
  return out;
}

void randomize(const ModelConfig& c, mot::Model& m) {
  mot::init_params(c, m.table(), m.params(), 7);
  // Larger weights than the init so that every dependency shows in fp32.
  mot::Rng rng(11);
  for (size_t i = 0; i < m.table().total; ++i) m.params()[i] += static_cast<float>(0.2 * rng.normal());
}

class TransfusionMask : public ::testing::TestWithParam<std::string> {};

// A patch sees the later patches of its own image; nothing sees past its image's end
// or, outside images, past itself.
TEST_P(TransfusionMask, FullInsideAnImageCausalElsewhere) {
  const ModelConfig c = make(GetParam());
  mot::Model m(c, 1, 16, false);
  randomize(c, m);
  const TokenBatch base = batch_of(kRow, 3, 400);
  const Losses a = run(m, base);
  // The last patch's latents change: every patch of the image sees it; the tokens
  // before the image do not.
  TokenBatch later = base;
  for (int j = 0; j < 12; ++j) later.latents[3 * 12 + j] += 0.5f;
  const Losses b = run(m, later);
  for (int64_t t = 0; t < kImg0; ++t) EXPECT_EQ(a.at[t], b.at[t]) << "position " << t << " sees the image";
  for (int64_t t = kImg0; t < kImg1; ++t) EXPECT_NE(a.at[t], b.at[t]) << "patch " << t << " does not see the last patch";
  // A token after the image changes: no image position's loss moves.
  std::vector<int32_t> row = kRow;
  row[10] = 17;
  const Losses d = run(m, batch_of(row, 3, 400));
  for (int64_t t = 0; t < 9; ++t) EXPECT_EQ(a.at[t], d.at[t]) << "position " << t << " sees a later token";
  EXPECT_NE(a.at[9], d.at[9]);  // the target of position 9 changed
}

INSTANTIATE_TEST_SUITE_P(Archs, TransfusionMask, ::testing::Values("dense", "mot"));

// The loss sums: LM targets only where input and target are tokens; the continuous
// modality's squared errors over positions x latent_dim.
TEST(Transfusion, LossSumsCountTargetsAndPositions) {
  const ModelConfig c = make("mot");
  mot::Model m(c, 1, 16, false);
  randomize(c, m);
  const Losses a = run(m, batch_of(kRow, 5, 999));
  // targets: 0->1, 1->2, 2->3 (3 is <boi> -> next is an image: none), 8->9, 9->10, 10->11
  EXPECT_EQ(a.sums.targets, 6);
  EXPECT_EQ(a.sums.targets_by_mod[1], 4);
  EXPECT_EQ(a.sums.diffusion_values, 4 * 12);
  double sq = 0;
  for (int64_t t = kImg0; t < kImg1; ++t) sq += a.at[t];
  EXPECT_DOUBLE_EQ(a.sums.diffusion, sq);
  EXPECT_DOUBLE_EQ(a.sums.modality_mean(c, 1), sq / 48.0);
  EXPECT_NEAR(a.sums.mean(c), a.sums.lm_mean() + 5.0 * sq / 48.0, 1e-12);
  EXPECT_EQ(a.at[3], 0.0);  // <boi>: its next entry is continuous, no LM target
}

// The cosine schedule against its closed form, and the noising of the inputs.
TEST(Transfusion, CosineScheduleAndNoising) {
  const mot::CosineSchedule s(1000);
  const auto g = [](double x) { return std::pow(std::cos((x + 0.008) / 1.008 * M_PI / 2), 2); };
  double prod = 1.0;
  for (int tau = 0; tau < 1000; ++tau) {
    prod *= 1.0 - std::min(1.0 - g((tau + 1) / 1000.0) / g(tau / 1000.0), 0.999);
    ASSERT_DOUBLE_EQ(s.alpha_bar(tau), prod) << tau;
  }
  EXPECT_GT(s.alpha_bar(0), 0.9999);
  EXPECT_LT(s.alpha_bar(999), 1e-4);
  const float z0[2] = {0.5f, -1.0f}, eps[2] = {1.0f, 2.0f};
  float z[2];
  s.noise(500, z0, eps, 2, z);
  const double a = std::sqrt(s.alpha_bar(500)), b = std::sqrt(1 - s.alpha_bar(500));
  EXPECT_FLOAT_EQ(z[0], static_cast<float>(a * 0.5 + b));
  EXPECT_FLOAT_EQ(z[1], static_cast<float>(-a + 2 * b));
}

// Bad input: one clear mot::Error each.
TEST(Transfusion, BadBatchesAreRefused) {
  const ModelConfig c = make("dense");
  mot::Model m(c, 1, 16, false);
  mot::LossSums s;
  s.reset(2);
  const auto expect_error = [&](TokenBatch tb, const char* what) {
    s.reset(2);
    try {
      m.run(tb, false, 0.0f, s);
      ADD_FAILURE() << "no error for " << what;
    } catch (const mot::Error& e) {
      SUCCEED() << e.what();
    }
  };
  TokenBatch tb = batch_of(kRow, 1, 1000);
  expect_error(tb, "τ = T");
  std::vector<int32_t> short_span = kRow;
  short_span.erase(short_span.begin() + 4);  // 3 patches
  TokenBatch sb = batch_of(short_span, 1, 10);
  expect_error(sb, "a span of 3 positions");
  TokenBatch nan = batch_of(kRow, 1, 10);
  nan.latents[5] = std::nanf("");
  expect_error(nan, "NaN latents");
  TokenBatch last = batch_of({1, 5, 2, C, C, C, C}, 1, 10);
  expect_error(last, "an image as the last entry");
  TokenBatch width = batch_of(kRow, 1, 10);
  width.latent_dim = 11;
  expect_error(width, "latent width 11");
}

}  // namespace
