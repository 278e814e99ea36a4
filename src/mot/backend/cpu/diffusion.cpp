// Transfusion kernels (SPEC 2b): small row-wise loops, deterministic for any thread count.
#include <cmath>

#include "mot/backend/cpu/cpu_backend.hpp"

namespace mot::cpu {

namespace {
inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
}  // namespace

void CpuBackend::silu_forward(ConstMat x, Mat y) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.row(r);
    float* yr = y.row(r);
    for (int64_t j = 0; j < x.cols; ++j) yr[j] = xr[j] * sigmoid(xr[j]);
  }
}

void CpuBackend::silu_backward(ConstMat x, ConstMat dy, Mat dx) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.row(r);
    const float* dyr = dy.row(r);
    float* dxr = dx.row(r);
    for (int64_t j = 0; j < x.cols; ++j) {
      const float s = sigmoid(xr[j]);
      dxr[j] = dyr[j] * s * (1.0f + xr[j] * (1.0f - s));
    }
  }
}

void CpuBackend::squared_error(Mat pred, ConstMat target, float grad_scale, bool backward, double* row_loss) {
  const float g = 2.0f * grad_scale;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < pred.rows; ++r) {
    float* p = pred.row(r);
    const float* t = target.row(r);
    double sum = 0.0;
    for (int64_t j = 0; j < pred.cols; ++j) {
      const double e = static_cast<double>(p[j]) - static_cast<double>(t[j]);
      sum += e * e;
      if (backward) p[j] = g * (p[j] - t[j]);
    }
    row_loss[r] = sum;
  }
}

void CpuBackend::sum_row_segments(ConstMat x, const int32_t* seg, Mat y) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < y.rows; ++k) {
    float* yk = y.row(k);
    for (int64_t j = 0; j < y.cols; ++j) yk[j] = 0.0f;
    for (int64_t r = seg[k]; r < seg[k + 1]; ++r) {
      const float* xr = x.row(r);
      for (int64_t j = 0; j < y.cols; ++j) yk[j] += xr[j];
    }
  }
}

}  // namespace mot::cpu
