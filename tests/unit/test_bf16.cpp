// bf16 rounding (bf16.hpp) and the bf16 Matmul (matmul.hpp).
//
// Rounding is checked against a definition that shares no code with the engine: the
// nearest of the two bf16 neighbours of x computed in double, ties to the one with an
// even last mantissa bit. The Matmul is checked against a double-precision loop over
// operands rounded with that definition, for all three layouts, odd sizes, padded
// leading dimensions and beta 0/1; and an operand inside the "already rounded" weight
// range must be used exactly as given.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "mot/backend/cpu/bf16.hpp"
#include "mot/backend/cpu/matmul.hpp"

namespace cpu = mot::cpu;

namespace {

// Reference rounding: truncation and the next bf16 up (in magnitude), pick the nearer.
float ref_round_bf16(float x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t lo_bits = u & 0xffff0000u;
  const float lo = std::bit_cast<float>(lo_bits);
  const float hi = std::bit_cast<float>(lo_bits + 0x10000u);  // may be inf: correct overflow
  const double dlo = std::abs(static_cast<double>(x) - lo);
  const double dhi = std::isinf(hi) ? std::abs(static_cast<double>(x) - std::ldexp(1.0, 128) * (x < 0 ? -1 : 1))
                                    : std::abs(static_cast<double>(x) - hi);
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return ((lo_bits >> 16) & 1u) ? hi : lo;  // tie: even
}

std::vector<float> randv(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

TEST(Bf16, RoundingMatchesNearestEvenDefinition) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(bits(rng));
    if (std::isnan(x)) continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(cpu::round_bf16(x)), std::bit_cast<uint32_t>(ref_round_bf16(x))) << x;
  }
  // exact ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 -> even (1); 1 + 3*2^-8 -> 1 + 2^-6
  EXPECT_EQ(cpu::round_bf16(1.0f + 0x1p-8f), 1.0f);
  EXPECT_EQ(cpu::round_bf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
  EXPECT_EQ(cpu::round_bf16(-1.0f - 0x1p-8f), -1.0f);
  // largest finite float rounds to infinity; infinities and NaN survive
  EXPECT_TRUE(std::isinf(cpu::round_bf16(std::numeric_limits<float>::max())));
  EXPECT_EQ(cpu::round_bf16(-INFINITY), -INFINITY);
  EXPECT_TRUE(std::isnan(cpu::round_bf16(NAN)));
  EXPECT_TRUE(std::isnan(cpu::round_bf16(std::bit_cast<float>(0x7f800001u))));  // signalling NaN stays NaN
  EXPECT_EQ(cpu::round_bf16(0.0f), 0.0f);
}

TEST(Bf16, RowAndCopyRounding) {
  const int64_t rows = 37, cols = 19, ld = 23;
  auto x = randv(rows * ld, 5);
  std::vector<float> y(rows * cols), z(x.size());
  cpu::round_bf16_rows(x.data(), ld, rows, cols, y.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(y[r * cols + c], ref_round_bf16(x[r * ld + c]));
  cpu::round_bf16_copy(x.data(), z.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(z[i], ref_round_bf16(x[i]));
}

namespace {

enum class Layout { NT, NN, TN };

// C = op(A)·op(B) + beta·C in double over reference-rounded operands.
// NT: A[M,K], B[N,K];  NN: A[M,K], B[K,N];  TN: A[K,M], B[K,N].
void check_layout(Layout lay, int64_t M, int64_t N, int64_t K, float beta, bool b_prerounded) {
  const int64_t pad = 3;
  const int64_t a_rows = lay == Layout::TN ? K : M, a_cols = lay == Layout::TN ? M : K;
  const int64_t b_rows = lay == Layout::NT ? N : K, b_cols = lay == Layout::NT ? K : N;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
  auto A = randv(a_rows * lda, 11), B = randv(b_rows * ldb, 12), C = randv(M * ldc, 13);
  // "weights": B lives in a buffer the Matmul is told holds rounded values; fill it
  // with unrounded values to see that it is used as is.
  std::vector<float> weights(B.size() + 8);
  std::copy(B.begin(), B.end(), weights.begin() + 4);
  const float* Bp = b_prerounded ? weights.data() + 4 : B.data();
  const int64_t scratch = 4096;
  std::vector<float> sa(scratch), sb(scratch);
  cpu::Matmul mm;
  mm.set_bf16(weights.data(), weights.data() + weights.size(), sa.data(), sb.data(), scratch);
  auto a = [&](int64_t i, int64_t k) -> double {
    return ref_round_bf16(lay == Layout::TN ? A[k * lda + i] : A[i * lda + k]);
  };
  auto b = [&](int64_t k, int64_t j) -> double {
    const float v = lay == Layout::NT ? B[j * ldb + k] : B[k * ldb + j];
    return b_prerounded ? v : ref_round_bf16(v);
  };
  std::vector<double> want(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += a(i, k) * b(k, j);
      want[i * N + j] = s + beta * C[i * ldc + j];
    }
  auto got = C;
  if (lay == Layout::NT) mm.nt(M, N, K, A.data(), lda, Bp, ldb, got.data(), ldc, beta);
  if (lay == Layout::NN) mm.nn(M, N, K, A.data(), lda, Bp, ldb, got.data(), ldc, beta);
  if (lay == Layout::TN) mm.tn(M, N, K, A.data(), lda, Bp, ldb, got.data(), ldc, beta);
  double err = 0, mx = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      err = std::max(err, std::abs(got[i * ldc + j] - want[i * N + j]));
      mx = std::max(mx, std::abs(want[i * N + j]));
    }
  // fp32 accumulation of exact products: a few ulps of fp32, far below one bf16 ulp
  // (2^-8) of the operands, which is what an unrounded operand would cost.
  EXPECT_LE(err, 1e-6 * std::max(mx, 1.0)) << "layout " << static_cast<int>(lay) << " M" << M << " N" << N << " K" << K;
  for (int64_t j = N; j < ldc; ++j) EXPECT_EQ(got[j], C[j]) << "padding column written";
}

}  // namespace

TEST(Bf16, MatmulMatchesRoundedOperandsInDouble) {
  for (Layout lay : {Layout::NT, Layout::NN, Layout::TN})
    for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 13, 33}, {33, 5, 17}, {16, 31, 64}})
      for (float beta : {0.0f, 1.0f})
        for (bool pre : {false, true}) check_layout(lay, M, N, K, beta, pre);
}

TEST(Bf16, MatmulDiffersFromFp32) {
  // The same product in fp32 differs by about a bf16 ulp: the rounding really happens.
  const int64_t M = 8, N = 8, K = 64;
  auto A = randv(M * K, 21), B = randv(N * K, 22);
  std::vector<float> c32(M * N), c16(M * N), sa(M * K), sb(N * K);
  cpu::Matmul mm;
  mm.nt(M, N, K, A.data(), K, B.data(), K, c32.data(), N, 0.0f);
  mm.set_bf16(nullptr, nullptr, sa.data(), sb.data(), M * K);
  mm.nt(M, N, K, A.data(), K, B.data(), K, c16.data(), N, 0.0f);
  double diff = 0;
  for (int64_t i = 0; i < M * N; ++i) diff = std::max(diff, static_cast<double>(std::abs(c32[i] - c16[i])));
  EXPECT_GT(diff, 1e-3);
}

TEST(Bf16, PrecisionNames) {
  EXPECT_EQ(mot::parse_precision("bf16", "x"), mot::Precision::bf16);
  EXPECT_EQ(mot::parse_precision("fp32", "x"), mot::Precision::fp32);
  EXPECT_THROW(mot::parse_precision("fp16", "x"), std::exception);
}
