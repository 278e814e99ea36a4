#include "mot/backend/cpu/kernels.hpp"

#include "mot/backend/cpu/fast_exp.hpp"
#include "mot/core/profile.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mot::cpu {

void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t d, float eps) {
  prof::Scope prof_scope(prof::Norm);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const float rs = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    rstd[r] = rs;
    float* yr = y + r * d;
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * rs * w[i];
  }
}

void rmsnorm_apply(const float* x, const float* w, const float* rstd, float* y, int64_t n, int64_t d) {
  prof::Scope prof_scope(prof::Norm);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float rs = rstd[r];
    const float* xr = x + r * d;
    float* yr = y + r * d;
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * rs * w[i];
  }
}

void rmsnorm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                      int64_t n, int64_t d, bool accumulate, float* scratch) {
  prof::Scope prof_scope(prof::Norm);
  std::memset(scratch, 0, sizeof(float) * kReduceChunks * d);
  const int64_t per = (n + kReduceChunks - 1) / kReduceChunks;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kReduceChunks; ++c) {
    float* part = scratch + c * d;
    const int64_t r0 = c * per, r1 = std::min(n, r0 + per);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      const float* dyr = dy + r * d;
      float* dxr = dx + r * d;
      const float rs = rstd[r];
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < d; ++i) dot += dyr[i] * w[i] * xr[i];
      const float k = rs * rs * rs * dot / static_cast<float>(d);
      if (accumulate) {
#pragma omp simd
        for (int64_t i = 0; i < d; ++i) dxr[i] += rs * dyr[i] * w[i] - k * xr[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < d; ++i) dxr[i] = rs * dyr[i] * w[i] - k * xr[i];
      }
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) part[i] += dyr[i] * xr[i] * rs;
    }
  }
  for (int64_t c = 0; c < kReduceChunks; ++c)
    for (int64_t i = 0; i < d; ++i) dw[i] += scratch[c * d + i];
}

namespace {
inline float sigmoid(float a) { return 1.0f / (1.0f + fast_exp(-a)); }
}  // namespace

void swiglu_forward(const float* ac, float* g, int64_t n, int64_t F) {
  prof::Scope prof_scope(prof::SwiGLU);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* a = ac + r * 2 * F;
    const float* c = a + F;
    float* gr = g + r * F;
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) gr[i] = a[i] * sigmoid(a[i]) * c[i];
  }
}

void swiglu_backward(const float* ac, const float* dg, float* dac, int64_t n, int64_t F) {
  prof::Scope prof_scope(prof::SwiGLU);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* a = ac + r * 2 * F;
    const float* c = a + F;
    const float* dgr = dg + r * F;
    float* da = dac + r * 2 * F;
    float* dc = da + F;
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) {
      const float s = sigmoid(a[i]), silu = a[i] * s;
      dc[i] = dgr[i] * silu;
      da[i] = dgr[i] * c[i] * s * (1.0f + a[i] * (1.0f - s));
    }
  }
}

void add(const float* a, const float* b, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

double sum_squares(const float* x, int64_t n) {
  double part[kReduceChunks] = {};
  const int64_t per = (n + kReduceChunks - 1) / kReduceChunks;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kReduceChunks; ++c) {
    double s = 0.0;
    const int64_t i1 = std::min(n, (c + 1) * per);
    for (int64_t i = c * per; i < i1; ++i) s += static_cast<double>(x[i]) * x[i];
    part[c] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

void scale(float* x, int64_t n, float s) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) {
  const float step_size = s.lr / s.bias1;
  const float inv_sqrt_bias2 = 1.0f / std::sqrt(s.bias2);
  const float decay = 1.0f - s.lr * s.weight_decay;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    p[i] *= decay;
    m[i] = s.beta1 * m[i] + s.one_minus_beta1 * g[i];
    v[i] = s.beta2 * v[i] + s.one_minus_beta2 * g[i] * g[i];
    const float denom = std::sqrt(v[i]) * inv_sqrt_bias2 + s.eps;
    p[i] -= step_size * m[i] / denom;
  }
}

}  // namespace mot::cpu
