// Elementwise and row-wise fp32 kernels (OpenMP). Each forward has its backward next
// to it. Reductions over rows (weight gradients of norms) use a fixed number of
// partial sums added in a fixed order, so results are bit-identical run to run and
// do not depend on OpenMP scheduling.
#pragma once
#include <cstdint>

#include "mot/backend/backend.hpp"

namespace mot::cpu {

using mot::kReduceChunks;  // partial sums per row reduction

// y = x * rstd * w per row; rstd[r] = 1/sqrt(mean(x_r^2) + eps). Rows have stride d.
void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t d, float eps);
// dx = (or +=, if accumulate) d/dx; dw += sum_r dy_r * x_r * rstd_r.
// scratch: kReduceChunks * d floats.
void rmsnorm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                      int64_t n, int64_t d, bool accumulate, float* scratch);
// Same on y = x * rstd (no weight) recomputed: y rows written from x and rstd.
void rmsnorm_apply(const float* x, const float* w, const float* rstd, float* y, int64_t n, int64_t d);

// SwiGLU on ac = [a | c] rows of 2F: g = silu(a) * c.
void swiglu_forward(const float* ac, float* g, int64_t n, int64_t F);
// dac = [da | dc] from dg (rows of 2F).
void swiglu_backward(const float* ac, const float* dg, float* dac, int64_t n, int64_t F);

// y = a + b (n elements); y may alias a.
void add(const float* a, const float* b, float* y, int64_t n);

// Sum of squares in double with a fixed reduction order.
double sum_squares(const float* x, int64_t n);
void scale(float* x, int64_t n, float s);

// Decoupled AdamW on a contiguous slice (PyTorch's AdamW formula).
using AdamWStep = mot::AdamWStep;
void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s);

}  // namespace mot::cpu
