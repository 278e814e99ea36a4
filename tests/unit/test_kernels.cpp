// CPU kernels (src/mot/backend/cpu/kernels.hpp, gemm.hpp) against plain loops in double:
// RMSNorm forward/apply/backward (dx overwrite/accumulate, dw accumulation; naive
// gradients checked by central finite differences), SwiGLU forward/backward, add,
// scale, sum_squares, AdamW (torch.optim.AdamW's formula, several steps) and the three
// GEMM layouts with odd sizes, padded leading dimensions, zero M/N/K and beta 0/1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <limits>
#include <random>
#include <vector>

#include "mot/backend/cpu/bf16.hpp"
#include "mot/backend/cpu/gemm.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/backend/cpu/rowexact.hpp"

namespace cpu = mot::cpu;

namespace {

std::vector<float> randv(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// max |got - ref| / max(max |ref|, floor); non-finite got counts as infinite error.
template <class G, class R>
double rel_err(const G& got, const R& ref, double floor = 1e-30) {
  double e = 0.0, m = 0.0;
  EXPECT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    const double g = got[i], r = ref[i];
    m = std::max(m, std::abs(r));
    e = std::max(e, std::isfinite(g) ? std::abs(g - r) : std::numeric_limits<double>::infinity());
  }
  return e / std::max(m, floor);
}

// ---------------------------------------------------------------- RMSNorm (double)
struct NaiveNorm {
  int64_t n, d;
  double eps;
  std::vector<double> x, w, dy;
  std::vector<double> y, rstd, dx, dw;

  void forward() {
    y.assign(n * d, 0.0);
    rstd.assign(n, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      double ss = 0.0;
      for (int64_t i = 0; i < d; ++i) ss += x[r * d + i] * x[r * d + i];
      rstd[r] = 1.0 / std::sqrt(ss / d + eps);
      for (int64_t i = 0; i < d; ++i) y[r * d + i] = x[r * d + i] * rstd[r] * w[i];
    }
  }
  void backward() {  // gradient of sum(dy ⊙ y)
    dx.assign(n * d, 0.0);
    dw.assign(d, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      const double rs = rstd[r];
      double dot = 0.0;
      for (int64_t i = 0; i < d; ++i) dot += dy[r * d + i] * w[i] * x[r * d + i];
      for (int64_t i = 0; i < d; ++i) {
        dx[r * d + i] = rs * dy[r * d + i] * w[i] - rs * rs * rs * dot / d * x[r * d + i];
        dw[i] += dy[r * d + i] * x[r * d + i] * rs;
      }
    }
  }
  double loss() {
    forward();
    double l = 0.0;
    for (int64_t i = 0; i < n * d; ++i) l += dy[i] * y[i];
    return l;
  }
};

NaiveNorm make_norm(int64_t n, int64_t d, double eps, uint32_t seed) {
  NaiveNorm nn{n, d, eps, {}, {}, {}, {}, {}, {}, {}};
  auto x = randv(n * d, seed), w = randv(d, seed + 1, 0.5f, 1.5f), dy = randv(n * d, seed + 2);
  nn.x.assign(x.begin(), x.end());
  nn.w.assign(w.begin(), w.end());
  nn.dy.assign(dy.begin(), dy.end());
  return nn;
}

TEST(KernelsNaive, RmsNormBackwardMatchesFiniteDifferences) {
  NaiveNorm nn = make_norm(3, 7, 1e-5, 3);
  nn.forward();
  nn.backward();
  const double h = 1e-6;
  auto fd = [&](std::vector<double>& v, size_t i) {
    const double x0 = v[i];
    v[i] = x0 + h;
    const double lp = nn.loss();
    v[i] = x0 - h;
    const double lm = nn.loss();
    v[i] = x0;
    return (lp - lm) / (2 * h);
  };
  std::vector<double> dx = nn.dx, dw = nn.dw;
  for (size_t i = 0; i < nn.x.size(); ++i) EXPECT_NEAR(fd(nn.x, i), dx[i], 1e-7) << "dx " << i;
  for (size_t i = 0; i < nn.w.size(); ++i) EXPECT_NEAR(fd(nn.w, i), dw[i], 1e-7) << "dw " << i;
}

TEST(Kernels, RmsNormForwardAndApply) {
  for (int64_t n : {0, 1, 3, 17, 100}) {
    for (int64_t d : {1, 7, 64, 100}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " d=" << d);
      const float eps = 1e-5f;
      NaiveNorm nn = make_norm(n, d, eps, static_cast<uint32_t>(n * 1000 + d));
      nn.forward();
      std::vector<float> x(nn.x.begin(), nn.x.end()), w(nn.w.begin(), nn.w.end());
      std::vector<float> y(n * d, -7.0f), rstd(n, -7.0f), y2(n * d, -7.0f);
      cpu::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), n, d, eps);
      EXPECT_LE(rel_err(y, nn.y), 1e-6);
      EXPECT_LE(rel_err(rstd, nn.rstd), 1e-6);
      cpu::rmsnorm_apply(x.data(), w.data(), rstd.data(), y2.data(), n, d);
      EXPECT_EQ(y, y2) << "rmsnorm_apply must reproduce forward's y bit-for-bit";
    }
  }
  // A zero row: rstd = 1/sqrt(eps), y = 0.
  std::vector<float> x(8, 0.0f), w(8, 1.0f), y(8, 1.0f), rstd(1);
  cpu::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), 1, 8, 1e-4f);
  EXPECT_NEAR(rstd[0], 100.0f, 1e-3f);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(Kernels, RmsNormBackward) {
  for (int64_t n : {0, 1, 5, 16, 17, 33, 100}) {
    for (int64_t d : {1, 7, 64}) {
      for (bool accumulate : {false, true}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " d=" << d << " accumulate=" << accumulate);
        const float eps = 1e-5f;
        NaiveNorm nn = make_norm(n, d, eps, static_cast<uint32_t>(n * 100 + d));
        nn.forward();
        nn.backward();
        std::vector<float> x(nn.x.begin(), nn.x.end()), w(nn.w.begin(), nn.w.end()),
            dy(nn.dy.begin(), nn.dy.end());
        std::vector<float> y(n * d), rstd(n);
        cpu::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), n, d, eps);
        // Pre-existing contents: dx is overwritten (accumulate=false) or added to; dw always added to.
        std::vector<float> dx0 = randv(n * d, 4242), dw0 = randv(d, 4343);
        std::vector<float> dx = dx0, dw = dw0;
        std::vector<float> scratch(cpu::kReduceChunks * d, std::numeric_limits<float>::quiet_NaN());
        cpu::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), dw.data(), n, d, accumulate,
                              scratch.data());
        std::vector<double> ref_dx(n * d), ref_dw(d);
        for (int64_t i = 0; i < n * d; ++i) ref_dx[i] = nn.dx[i] + (accumulate ? dx0[i] : 0.0);
        for (int64_t i = 0; i < d; ++i) ref_dw[i] = nn.dw[i] + dw0[i];
        // dx is a difference of two terms of size ~|rstd·dy·w| that nearly cancel when d is small
        // (d = 1: dx ~ eps); compare relative to the size of the terms, not of the result.
        double term = 1e-30;
        for (int64_t r = 0; r < n; ++r)
          for (int64_t i = 0; i < d; ++i) term = std::max(term, std::abs(nn.rstd[r] * nn.dy[r * d + i] * nn.w[i]));
        EXPECT_LE(rel_err(dx, ref_dx, term), 1e-5);
        EXPECT_LE(rel_err(dw, ref_dw), 1e-5);

        // Determinism: the row reduction of dw does not depend on scheduling.
        std::vector<float> dx2 = dx0, dw2 = dw0;
        cpu::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), dx2.data(), dw2.data(), n, d,
                              accumulate, scratch.data());
        EXPECT_EQ(dx, dx2);
        EXPECT_EQ(dw, dw2);
      }
    }
  }
}

// ---------------------------------------------------------------- SwiGLU
double silu(double a) { return a / (1.0 + std::exp(-a)); }

TEST(KernelsNaive, SwigluBackwardMatchesFiniteDifferences) {
  // d/da [silu(a) c] and d/dc, analytic vs central differences, in double.
  for (double a : {-6.0, -1.3, -0.2, 0.0, 0.4, 2.5, 9.0}) {
    const double c = 0.7, h = 1e-6;
    const double s = 1.0 / (1.0 + std::exp(-a));
    const double da = c * s * (1.0 + a * (1.0 - s));
    const double fd = (silu(a + h) * c - silu(a - h) * c) / (2 * h);
    EXPECT_NEAR(da, fd, 1e-8) << a;
  }
}

TEST(Kernels, Swiglu) {
  for (int64_t n : {0, 1, 3, 40}) {
    for (int64_t F : {1, 5, 64}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " F=" << F);
      auto ac = randv(n * 2 * F, static_cast<uint32_t>(n * 7 + F), -8.0f, 8.0f);
      auto dg = randv(n * F, static_cast<uint32_t>(n * 7 + F + 1));
      std::vector<float> g(n * F, -9.0f), dac(n * 2 * F, -9.0f);
      cpu::swiglu_forward(ac.data(), g.data(), n, F);
      cpu::swiglu_backward(ac.data(), dg.data(), dac.data(), n, F);
      std::vector<double> rg(n * F), rdac(n * 2 * F);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < F; ++i) {
          const double a = ac[r * 2 * F + i], c = ac[r * 2 * F + F + i], gg = dg[r * F + i];
          const double s = 1.0 / (1.0 + std::exp(-a));
          rg[r * F + i] = a * s * c;
          rdac[r * 2 * F + i] = gg * c * s * (1.0 + a * (1.0 - s));
          rdac[r * 2 * F + F + i] = gg * a * s;
        }
      EXPECT_LE(rel_err(g, rg), 1e-6);
      EXPECT_LE(rel_err(dac, rdac), 1e-6);
    }
  }
  // Extreme inputs stay finite: silu(-100) ~ 0, silu(100) = 100.
  std::vector<float> ac = {-100.0f, 100.0f, 1.0f, 1.0f}, g(2), dg = {1.0f, 1.0f}, dac(4);
  cpu::swiglu_forward(ac.data(), g.data(), 1, 2);
  cpu::swiglu_backward(ac.data(), dg.data(), dac.data(), 1, 2);
  EXPECT_NEAR(g[0], 0.0f, 1e-30f);
  EXPECT_FLOAT_EQ(g[1], 100.0f);
  for (float v : dac) EXPECT_TRUE(std::isfinite(v));
  EXPECT_FLOAT_EQ(dac[1], 1.0f);   // d silu(a)/da -> 1 for large a
  EXPECT_FLOAT_EQ(dac[3], 100.0f);  // dc = silu(a)
}

// ---------------------------------------------------------------- add / scale / sum_squares
TEST(Kernels, AddAndScale) {
  for (int64_t n : {0, 1, 17, 1000}) {
    auto a = randv(n, 1), b = randv(n, 2);
    std::vector<float> y(n);
    cpu::add(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(y[i], a[i] + b[i]);
    std::vector<float> a2 = a;  // y aliases a
    cpu::add(a2.data(), b.data(), a2.data(), n);
    EXPECT_EQ(a2, y);
    cpu::scale(a2.data(), n, 0.5f);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(a2[i], y[i] * 0.5f);
  }
}

TEST(Kernels, SumSquares) {
  for (int64_t n : {0, 1, 15, 16, 17, 31, 1000, 100003}) {
    auto x = randv(n, static_cast<uint32_t>(n + 5), -3.0f, 3.0f);
    double ref = 0.0;
    long double acc = 0.0L;
    for (float v : x) acc += static_cast<long double>(v) * v;
    ref = static_cast<double>(acc);
    const double got = cpu::sum_squares(x.data(), n);
    EXPECT_NEAR(got, ref, 1e-12 * std::max(1.0, ref)) << "n=" << n;
    EXPECT_EQ(got, cpu::sum_squares(x.data(), n)) << "not deterministic, n=" << n;
  }
  // Values whose squares overflow float are fine in double.
  std::vector<float> big = {1e30f, -1e30f, 3.0f};
  const double b0 = big[0];
  EXPECT_NEAR(cpu::sum_squares(big.data(), 3), 2 * b0 * b0 + 9.0, 1e47);
}

// ---------------------------------------------------------------- AdamW
// torch.optim.AdamW (maximize=False, amsgrad=False, foreach/fused off), step t (1-based):
//   p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
struct AdamHp {
  double lr, b1, b2, eps, wd;
};

struct AdamTol {
  double m, v, p;
};

// Runs 6 steps of cpu::adamw and of the formula in double. With `as_float` the double
// reference uses exactly the float hyperparameters the kernel receives (AdamWStep fields);
// without it, the Python-double hyperparameters torch uses.
void check_adamw(const AdamHp& hp, int64_t n, bool as_float, const AdamTol& tol, double* worst_v = nullptr) {
  SCOPED_TRACE(testing::Message() << "lr=" << hp.lr << " b1=" << hp.b1 << " b2=" << hp.b2 << " eps=" << hp.eps
                                  << " wd=" << hp.wd << " n=" << n << " as_float=" << as_float);
  auto p = randv(n, 10, -2.0f, 2.0f);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
  for (int64_t t = 1; t <= 6; ++t) {
    auto g = randv(n, static_cast<uint32_t>(100 + t), -1.0f, 1.0f);
    if (n > 0) g[0] = 0.0f;             // a zero gradient: only decay moves p (m = v = 0)
    if (n > 1 && t > 2) g[1] = 1e-20f;  // tiny gradient: denominator dominated by eps
    cpu::AdamWStep s;
    s.lr = static_cast<float>(hp.lr);
    s.beta1 = static_cast<float>(hp.b1);
    s.beta2 = static_cast<float>(hp.b2);
    s.eps = static_cast<float>(hp.eps);
    s.weight_decay = static_cast<float>(hp.wd);
    // As in train/optimizer.cpp: 1 - beta^t in double, rounded to float.
    s.bias1 = static_cast<float>(1.0 - std::pow(hp.b1, static_cast<double>(t)));
    s.bias2 = static_cast<float>(1.0 - std::pow(hp.b2, static_cast<double>(t)));
    s.one_minus_beta1 = static_cast<float>(1.0 - hp.b1);
    s.one_minus_beta2 = static_cast<float>(1.0 - hp.b2);
    cpu::adamw(p.data(), g.data(), m.data(), v.data(), n, s);

    const double lr = as_float ? s.lr : hp.lr, b1 = as_float ? s.beta1 : hp.b1, b2 = as_float ? s.beta2 : hp.b2,
                 eps = as_float ? s.eps : hp.eps, wd = as_float ? s.weight_decay : hp.wd;
    const double b1t = as_float ? s.bias1 : 1.0 - std::pow(hp.b1, t), b2t = as_float ? s.bias2 : 1.0 - std::pow(hp.b2, t);
    for (int64_t i = 0; i < n; ++i) {
      rp[i] *= 1.0 - lr * wd;
      const double omb1 = as_float ? s.one_minus_beta1 : 1.0 - hp.b1, omb2 = as_float ? s.one_minus_beta2 : 1.0 - hp.b2;
      rm[i] = b1 * rm[i] + omb1 * g[i];
      rv[i] = b2 * rv[i] + omb2 * static_cast<double>(g[i]) * g[i];
      const double denom = std::sqrt(rv[i]) / std::sqrt(b2t) + eps;
      rp[i] -= lr / b1t * rm[i] / denom;
    }
    EXPECT_LE(rel_err(m, rm), tol.m) << "m, step " << t;
    const double ev = rel_err(v, rv);
    if (worst_v) *worst_v = std::max(*worst_v, ev);
    EXPECT_LE(ev, tol.v) << "v, step " << t;
    // p moves by ~lr per step: absolute error for |p| <= 1, relative above.
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i)
      worst = std::max(worst, std::abs(p[i] - rp[i]) / std::max(1.0, std::abs(rp[i])));
    EXPECT_LE(worst, tol.p) << "p, step " << t;
    if (n > 0) {
      EXPECT_EQ(m[0], 0.0f);
      EXPECT_EQ(v[0], 0.0f);
    }
  }
}

const AdamHp kAdamHps[] = {{1e-3, 0.9, 0.95, 1e-8, 0.1}, {3e-2, 0.8, 0.999, 1e-6, 0.0}, {0.5, 0.0, 0.5, 1e-3, 1.0},
                           {1e-2, 0.9, 0.99, 1e-8, 0.01}};

// The formula evaluated with the float hyperparameters the kernel is given: tight.
TEST(Kernels, AdamWMatchesFormula) {
  for (const AdamHp& hp : kAdamHps)
    for (int64_t n : {0, 1, 7, 1001}) check_adamw(hp, n, true, {1e-6, 1e-6, 2e-6});
}

// Against torch's double hyperparameters. (1 - beta) is formed in double before rounding to
// float (1 - 0.999f would be 0.00100001693...), so v stays within float rounding of torch.
TEST(Kernels, AdamWMatchesTorchDoubleHyperparameters) {
  double worst_v = 0.0;
  for (const AdamHp& hp : kAdamHps)
    for (int64_t n : {1, 7, 1001}) check_adamw(hp, n, false, {1e-6, 2e-6, 2e-6}, &worst_v);
  RecordProperty("worst_relative_v_error", std::to_string(worst_v));
  std::printf("AdamW vs torch double hyperparameters: worst relative error of v = %.3g\n", worst_v);
}

// ---------------------------------------------------------------- GEMM
enum class Layout { NT, NN, TN };

// C[M,N] = op(A)·op(B) + beta·C with row-major storage and leading dimensions; checks the
// padding between rows (ld > width) of C is left untouched.
void check_gemm(Layout lay, int64_t M, int64_t N, int64_t K, float beta, int64_t pad, bool nan_c) {
  SCOPED_TRACE(testing::Message() << "layout=" << static_cast<int>(lay) << " M=" << M << " N=" << N << " K=" << K
                                  << " beta=" << beta << " pad=" << pad << " nanC=" << nan_c);
  // Stored shapes: NT: A[M,K], B[N,K]; NN: A[M,K], B[K,N]; TN: A[K,M], B[K,N].
  const int64_t a_rows = lay == Layout::TN ? K : M, a_cols = lay == Layout::TN ? M : K;
  const int64_t b_rows = lay == Layout::NT ? N : K, b_cols = lay == Layout::NT ? K : N;
  const int64_t lda = std::max<int64_t>(1, a_cols + pad), ldb = std::max<int64_t>(1, b_cols + pad),
                ldc = std::max<int64_t>(1, N + pad);
  const uint32_t seed = static_cast<uint32_t>(M * 10007 + N * 101 + K * 3 + pad);
  auto A = randv(std::max<int64_t>(1, a_rows * lda), seed);
  auto B = randv(std::max<int64_t>(1, b_rows * ldb), seed + 1);
  const float guard = 777.0f;
  std::vector<float> C(std::max<int64_t>(1, M * ldc), guard);
  auto C0 = randv(M * N, seed + 2);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      C[i * ldc + j] = nan_c ? std::numeric_limits<float>::quiet_NaN() : C0[i * N + j];
  auto a = [&](int64_t i, int64_t k) -> double { return lay == Layout::TN ? A[k * lda + i] : A[i * lda + k]; };
  auto b = [&](int64_t k, int64_t j) -> double { return lay == Layout::NT ? B[j * ldb + k] : B[k * ldb + j]; };
  std::vector<double> ref(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) acc += a(i, k) * b(k, j);
      ref[i * N + j] = acc + (beta == 0.0f ? 0.0 : beta * static_cast<double>(C0[i * N + j]));
    }
  switch (lay) {
    case Layout::NT: cpu::gemm_nt(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, beta); break;
    case Layout::NN: cpu::gemm_nn(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, beta); break;
    case Layout::TN: cpu::gemm_tn(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, beta); break;
  }
  double worst = 0.0, mx = 0.0;
  int64_t guard_broken = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      const double g = C[i * ldc + j], r = ref[i * N + j];
      mx = std::max(mx, std::abs(r));
      worst = std::max(worst, std::isfinite(g) ? std::abs(g - r) : std::numeric_limits<double>::infinity());
    }
    for (int64_t j = N; j < ldc; ++j) guard_broken += C[i * ldc + j] != guard;
  }
  if (M == 0 || N == 0) guard_broken += C[0] != guard;  // nothing may be written
  EXPECT_EQ(guard_broken, 0) << "wrote outside C[M,N]";
  // fp32 dot products of length K with |terms| <= 1: absolute error ~ K * 2^-24.
  EXPECT_LE(worst, 1e-6 * std::max<double>(1.0, static_cast<double>(K)) + 1e-6 * mx);
}

TEST(Gemm, AllLayoutsOddSizes) {
  const int64_t sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 9}, {1, 33, 2}, {65, 31, 129},
                              {130, 67, 3}, {7, 129, 64}, {2, 2, 300}};
  for (Layout lay : {Layout::NT, Layout::NN, Layout::TN})
    for (const auto& s : sizes)
      for (float beta : {0.0f, 1.0f})
        for (int64_t pad : {0, 3}) check_gemm(lay, s[0], s[1], s[2], beta, pad, false);
}

// Sizes above OpenBLAS's threading threshold (M·N·K >= 262144), where the output may be
// split across threads by rows (M >= N) or by columns: odd sizes, slices that are not
// multiples of 16, a dimension smaller than the number of threads times 16, M or N = 1.
TEST(Gemm, LargeOddSizes) {
  const int64_t sizes[][3] = {{67, 45, 131}, {33, 200, 97}, {1, 3001, 101}, {3001, 1, 101},
                              {17, 20, 1000}, {5, 20, 3000}, {300, 17, 65}, {129, 130, 31}};
  for (Layout lay : {Layout::NT, Layout::NN, Layout::TN})
    for (const auto& s : sizes)
      for (float beta : {0.0f, 1.0f}) check_gemm(lay, s[0], s[1], s[2], beta, beta == 0.0f ? 5 : 0, false);
  for (Layout lay : {Layout::NT, Layout::NN, Layout::TN}) check_gemm(lay, 67, 45, 131, 0.0f, 1, true);
}

// Called from inside a parallel region (each thread its own product): same results.
TEST(Gemm, InsideParallelRegion) {
  const int64_t M = 70, N = 50, K = 90;  // above the threading threshold
  auto A = randv(M * K, 1), B = randv(N * K, 2);
  std::vector<float> ref(M * N);
  cpu::gemm_nt(M, N, K, A.data(), K, B.data(), K, ref.data(), N, 0.0f);
  std::vector<std::vector<float>> out(4, std::vector<float>(M * N, -1.0f));
#pragma omp parallel for schedule(static, 1)
  for (int i = 0; i < 4; ++i) cpu::gemm_nt(M, N, K, A.data(), K, B.data(), K, out[i].data(), N, 0.0f);
  for (int i = 0; i < 4; ++i) EXPECT_LE(rel_err(out[i], ref), 1e-6) << i;
}

TEST(Gemm, ZeroSizes) {
  for (Layout lay : {Layout::NT, Layout::NN, Layout::TN})
    for (float beta : {0.0f, 1.0f})
      for (int64_t pad : {0, 2}) {
        check_gemm(lay, 0, 5, 3, beta, pad, false);
        check_gemm(lay, 4, 0, 3, beta, pad, false);
        check_gemm(lay, 0, 0, 0, beta, pad, false);
        check_gemm(lay, 4, 5, 0, beta, pad, false);  // C = beta·C
        check_gemm(lay, 1, 1, 0, beta, pad, false);
      }
}

// beta = 0 must overwrite C without reading it (the engine's buffers are uninitialised
// arena memory): NaN in C must not leak into the result.
TEST(Gemm, BetaZeroIgnoresOldC) {
  for (Layout lay : {Layout::NT, Layout::NN, Layout::TN}) {
    check_gemm(lay, 5, 7, 3, 0.0f, 1, true);
    check_gemm(lay, 64, 65, 33, 0.0f, 0, true);
    check_gemm(lay, 4, 5, 0, 0.0f, 0, true);
  }
}

// Y = X·Wᵀ, dX = dY·W, dW = dYᵀ·X agree with each other (the layouts are consistent).
TEST(Gemm, LinearLayerIdentities) {
  const int64_t n = 13, in = 9, out = 11;
  auto X = randv(n * in, 1), W = randv(out * in, 2);
  std::vector<float> Y(n * out), WT(in * out);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) WT[i * out + o] = W[o * in + i];
  cpu::gemm_nt(n, out, in, X.data(), in, W.data(), in, Y.data(), out, 0.0f);
  std::vector<float> Y2(n * out);
  cpu::gemm_nn(n, out, in, X.data(), in, WT.data(), out, Y2.data(), out, 0.0f);
  EXPECT_LE(rel_err(Y, Y2), 1e-6);
  // Accumulation: beta = 1 twice gives 2·Y.
  std::vector<float> Y3(n * out, 0.0f);
  cpu::gemm_nt(n, out, in, X.data(), in, W.data(), in, Y3.data(), out, 1.0f);
  cpu::gemm_nt(n, out, in, X.data(), in, W.data(), in, Y3.data(), out, 1.0f);
  std::vector<double> twice(Y.begin(), Y.end());
  for (auto& v : twice) v *= 2.0;
  EXPECT_LE(rel_err(Y3, twice), 1e-6);
}

}  // namespace

// The batch-invariant linear layer of generation (backend/cpu/rowexact.hpp): right
// against a double reference, and each row's outputs bit-identical whatever rows
// surround it (alone, first, last, or in a block of four).
TEST(RowExact, MatchesReferenceAndIsRowInvariant) {
  const int64_t N = 37, K = 83;
  for (int64_t M : {1, 2, 3, 4, 5, 9}) {
    std::vector<float> x(M * K), w(N * K), y(M * N), y1(N), yb(M * N), yb1(N);
    std::vector<uint16_t> wb(N * K);
    for (int64_t i = 0; i < M * K; ++i) x[i] = static_cast<float>(std::sin(0.1 * static_cast<double>(i)));
    for (int64_t i = 0; i < N * K; ++i) {
      w[i] = static_cast<float>(std::cos(0.07 * static_cast<double>(i)));
      wb[i] = mot::cpu::to_bf16_bits(w[i]);
    }
    mot::cpu::linear_rowexact(M, N, K, x.data(), K, w.data(), y.data(), N);
    mot::cpu::linear_rowexact(M, N, K, x.data(), K, wb.data(), yb.data(), N);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double s = 0, sb = 0;
        for (int64_t k = 0; k < K; ++k) {
          s += static_cast<double>(x[m * K + k]) * w[n * K + k];
          sb += static_cast<double>(x[m * K + k]) * mot::cpu::from_bf16_bits(wb[n * K + k]);
        }
        ASSERT_NEAR(y[m * N + n], s, 1e-5);
        ASSERT_NEAR(yb[m * N + n], sb, 1e-5);
      }
      mot::cpu::linear_rowexact(1, N, K, x.data() + m * K, K, w.data(), y1.data(), N);
      mot::cpu::linear_rowexact(1, N, K, x.data() + m * K, K, wb.data(), yb1.data(), N);
      ASSERT_EQ(0, std::memcmp(y1.data(), y.data() + m * N, sizeof(float) * N)) << "row " << m << " of " << M;
      ASSERT_EQ(0, std::memcmp(yb1.data(), yb.data() + m * N, sizeof(float) * N)) << "row " << m << " of " << M;
    }
  }
}
