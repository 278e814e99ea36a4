#include "mot/backend/cpu/cpu_backend.hpp"

#include <cassert>
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/attention.hpp"
#include "mot/backend/cpu/bf16.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/backend/cpu/rowexact.hpp"
#include "mot/core/error.hpp"
#include "mot/core/profile.hpp"

namespace mot::cpu {

namespace {
// The row kernels of kernels.hpp take compact rows.
template <class T>
bool compact(const View<T>& v) { return v.ld == v.cols; }
}  // namespace

void CpuBackend::bind_scratch(const BackendScratch& s) {
  scratch_ = s;
  if (precision_ == Precision::bf16)
    mm_.set_bf16(s.rounded_weights_begin, s.rounded_weights_end, s.bf16_a, s.bf16_b, s.bf16_floats);
}

// ---- linear layers

void CpuBackend::linear_forward(ConstMat x, const float* W, Mat y) {
  if (!batch_invariant_) return mm_.nt(x.rows, y.cols, x.cols, x.data, x.ld, W, x.cols, y.data, y.ld, 0.0f);
  if (precision_ == Precision::fp32) return linear_rowexact(x.rows, y.cols, x.cols, x.data, x.ld, W, y.data, y.ld);
  // bf16: the packed weights and the input rounded to bf16 (the numerics of mm_'s bf16
  // GEMM, in the batch-invariant order).
  if (!scratch_.packed_bf16 || W < scratch_.rounded_weights_begin || W >= scratch_.rounded_weights_end)
    fail("internal: a bf16 batch-invariant linear layer needs packed weights");
  if (x.rows * x.cols > scratch_.bf16_floats) fail("internal: bf16 operand exceeds the scratch");
  round_bf16_rows(x.data, x.ld, x.rows, x.cols, scratch_.bf16_a);
  linear_rowexact(x.rows, y.cols, x.cols, scratch_.bf16_a, x.cols,
                  scratch_.packed_bf16 + (W - scratch_.rounded_weights_begin), y.data, y.ld);
}

void CpuBackend::linear_backward_input(ConstMat dy, const float* W, Mat dx, bool accumulate) {
  mm_.nn(dy.rows, dx.cols, dy.cols, dy.data, dy.ld, W, dx.cols, dx.data, dx.ld, accumulate ? 1.0f : 0.0f);
}

void CpuBackend::linear_backward_weight(ConstMat dy, ConstMat x, float* dW) {
  mm_.tn(dy.cols, x.cols, dy.rows, dy.data, dy.ld, x.data, x.ld, dW, x.cols, 1.0f);
}

void CpuBackend::round_weights(const float* params, float* rounded, int64_t n) {
  prof::Scope scope(prof::RoundBf16);
  round_bf16_copy(params, rounded, n);
  if (uint16_t* packed = scratch_.packed_bf16) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) packed[i] = to_bf16_bits(params[i]);
  }
}

// ---- embedding

void CpuBackend::embed_forward(const int32_t* ids, const float* table, Mat x) {
  const int64_t n = x.rows, d = x.cols;
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < n; ++s) std::memcpy(x.row(s), table + static_cast<int64_t>(ids[s]) * d, sizeof(float) * d);
}

// Serial over rows: a token may repeat, and a fixed order keeps the sum deterministic.
void CpuBackend::embed_backward(const int32_t* ids, ConstMat dx, float* dtable) {
  const int64_t n = dx.rows, d = dx.cols;
  for (int64_t s = 0; s < n; ++s) {
    float* row = dtable + static_cast<int64_t>(ids[s]) * d;
    const float* g = dx.row(s);
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) row[i] += g[i];
  }
}

// ---- norms, residual, SwiGLU

void CpuBackend::rmsnorm_forward(ConstMat x, const float* w, float eps, Mat y, float* rstd) {
  assert(compact(x) && compact(y));
  cpu::rmsnorm_forward(x.data, w, y.data, rstd, x.rows, x.cols, eps);
}

void CpuBackend::rmsnorm_apply(ConstMat x, const float* w, const float* rstd, Mat y) {
  assert(compact(x) && compact(y));
  cpu::rmsnorm_apply(x.data, w, rstd, y.data, x.rows, x.cols);
}

void CpuBackend::rmsnorm_backward(ConstMat x, const float* w, const float* rstd, ConstMat dy, Mat dx,
                                  bool accumulate, float* dw) {
  assert(compact(x) && compact(dy) && compact(dx) && scratch_.reduce_floats >= kReduceChunks * x.cols);
  cpu::rmsnorm_backward(x.data, w, rstd, dy.data, dx.data, dw, x.rows, x.cols, accumulate, scratch_.reduce);
}

void CpuBackend::add(ConstMat a, ConstMat b, Mat y) {
  assert(compact(a) && compact(b) && compact(y));
  cpu::add(a.data, b.data, y.data, y.size());
}

void CpuBackend::swiglu_forward(ConstMat ac, Mat g) { cpu::swiglu_forward(ac.data, g.data, g.rows, g.cols); }

void CpuBackend::swiglu_backward(ConstMat ac, ConstMat dg, Mat dac) {
  cpu::swiglu_backward(ac.data, dg.data, dac.data, dg.rows, dg.cols);
}

// ---- attention

void CpuBackend::attention_forward(const mot::AttnShape& s, const float* Q, const float* K, const float* V,
                                   const KeyRanges& mask, float* O, float* lse) {
  cpu::attention_forward(s, Q, K, V, mask, O, lse);
}

void CpuBackend::attention_backward(const mot::AttnShape& s, const float* Q, const float* K, const float* V,
                                    const float* O, const float* lse, const float* dO, const KeyRanges& mask,
                                    float* dQ, float* dK, float* dV) {
  cpu::attention_backward(s, Q, K, V, O, lse, dO, mask, dQ, dK, dV);
}

// ---- optimizer

double CpuBackend::sum_squares(const float* x, int64_t n) { return cpu::sum_squares(x, n); }
void CpuBackend::scale(float* x, int64_t n, float s) { cpu::scale(x, n, s); }
void CpuBackend::adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) {
  cpu::adamw(p, g, m, v, n, s);
}

}  // namespace mot::cpu
