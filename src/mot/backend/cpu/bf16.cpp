#include "mot/backend/cpu/bf16.hpp"

namespace mot::cpu {

void round_bf16_rows(const float* x, int64_t ldx, int64_t rows, int64_t cols, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = round_bf16(xr[c]);
  }
}

void round_bf16_copy(const float* x, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) y[i] = round_bf16(x[i]);
}

}  // namespace mot::cpu
