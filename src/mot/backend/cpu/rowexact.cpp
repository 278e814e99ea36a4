#include "mot/backend/cpu/rowexact.hpp"

// GCC 12 warns inside its own AVX-512 headers (their _mm512_undefined_* placeholders)
// when the conversion intrinsics are inlined; the warning is about the header, not us.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "mot/core/profile.hpp"

namespace mot::cpu {

namespace {

constexpr int kRows = 6, kCols = 4;  // outputs per register block

#if defined(__AVX512F__) && defined(__AVX512BW__)
// 16 lanes: one zmm per (row, column) accumulator; masked loads for the tail of k.
using Vec = __m512;
constexpr int64_t kLanes = 16;
inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1); }
inline Vec load_x(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline Vec load_w(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline Vec load_w(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec zero() { return _mm512_setzero_ps(); }
inline float reduce(Vec v) {
  alignas(64) float b[16];
  _mm512_store_ps(b, v);
  float h[8];
  for (int i = 0; i < 8; ++i) h[i] = b[i] + b[i + 8];
  return ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]));
}
#elif defined(__AVX2__) && defined(__FMA__)
// 8 lanes; the tail of k goes through a zero-padded copy (same arithmetic every call).
using Vec = __m256;
constexpr int64_t kLanes = 8;
using Mask = int64_t;  // lanes left
inline Mask tail_mask(int64_t left) { return std::min<int64_t>(left, 8); }
inline Vec load_x(const float* p, Mask m) {
  if (m == 8) return _mm256_loadu_ps(p);
  alignas(32) float b[8] = {};
  std::memcpy(b, p, sizeof(float) * m);
  return _mm256_load_ps(b);
}
inline Vec load_w(const float* p, Mask m) { return load_x(p, m); }
inline Vec load_w(const uint16_t* p, Mask m) {
  alignas(16) uint16_t b[8] = {};
  std::memcpy(b, p, sizeof(uint16_t) * m);
  const __m128i h = m == 8 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)) : _mm_load_si128(reinterpret_cast<const __m128i*>(b));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec zero() { return _mm256_setzero_ps(); }
inline float reduce(Vec v) {
  alignas(32) float b[8];
  _mm256_store_ps(b, v);
  return ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]));
}
#else
#define MOT_ROWEXACT_SCALAR 1
#endif

inline float weight(float w) { return w; }
inline float weight(uint16_t w) {
  const uint32_t u = static_cast<uint32_t>(w) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

#ifndef MOT_ROWEXACT_SCALAR
// The accumulators are named variables, not an array: the intrinsics' vector types may
// alias floats, so an accumulator array would be stored back to memory after every
// load of x or w.
template <class W>
inline void block4(int64_t K, const float* const* xr, const W* const* wr, float (*out)[kCols]) {
  const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3];
  const W *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];
  Vec a00 = zero(), a01 = zero(), a02 = zero(), a03 = zero(), a10 = zero(), a11 = zero(), a12 = zero(),
      a13 = zero(), a20 = zero(), a21 = zero(), a22 = zero(), a23 = zero(), a30 = zero(), a31 = zero(),
      a32 = zero(), a33 = zero();
  auto step = [&](int64_t k, auto m) __attribute__((always_inline)) {
    const Vec v0 = load_w(w0 + k, m), v1 = load_w(w1 + k, m), v2 = load_w(w2 + k, m), v3 = load_w(w3 + k, m);
    Vec x = load_x(x0 + k, m);
    a00 = fma(x, v0, a00), a01 = fma(x, v1, a01), a02 = fma(x, v2, a02), a03 = fma(x, v3, a03);
    x = load_x(x1 + k, m);
    a10 = fma(x, v0, a10), a11 = fma(x, v1, a11), a12 = fma(x, v2, a12), a13 = fma(x, v3, a13);
    x = load_x(x2 + k, m);
    a20 = fma(x, v0, a20), a21 = fma(x, v1, a21), a22 = fma(x, v2, a22), a23 = fma(x, v3, a23);
    x = load_x(x3 + k, m);
    a30 = fma(x, v0, a30), a31 = fma(x, v1, a31), a32 = fma(x, v2, a32), a33 = fma(x, v3, a33);
  };
  const int64_t full = K / kLanes * kLanes;
  for (int64_t k = 0; k < full; k += kLanes) step(k, tail_mask(kLanes));
  if (full < K) step(full, tail_mask(K - full));
  const Vec all[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < kCols; ++c) out[r][c] = reduce(all[r][c]);
}

template <class W>
inline void block1(int64_t K, const float* x0, const W* const* wr, float* out) {
  const W *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];
  Vec a0 = zero(), a1 = zero(), a2 = zero(), a3 = zero();
  auto step = [&](int64_t k, auto m) __attribute__((always_inline)) {
    const Vec x = load_x(x0 + k, m);
    a0 = fma(x, load_w(w0 + k, m), a0), a1 = fma(x, load_w(w1 + k, m), a1);
    a2 = fma(x, load_w(w2 + k, m), a2), a3 = fma(x, load_w(w3 + k, m), a3);
  };
  const int64_t full = K / kLanes * kLanes;
  for (int64_t k = 0; k < full; k += kLanes) step(k, tail_mask(kLanes));
  if (full < K) step(full, tail_mask(K - full));
  out[0] = reduce(a0), out[1] = reduce(a1), out[2] = reduce(a2), out[3] = reduce(a3);
}

// Six rows: 24 accumulators + 4 weight vectors + 1 input vector fit AVX-512's 32
// registers; each weight vector loaded serves six rows (prefill is compute-bound).
template <class W>
inline void block6(int64_t K, const float* const* xr, const W* const* wr, float (*out)[kCols]) {
#if defined(__AVX512F__)
  const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5];
  const W *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];
  Vec a00 = zero(), a01 = zero(), a02 = zero(), a03 = zero(), a10 = zero(), a11 = zero(), a12 = zero(),
      a13 = zero(), a20 = zero(), a21 = zero(), a22 = zero(), a23 = zero(), a30 = zero(), a31 = zero(),
      a32 = zero(), a33 = zero(), a40 = zero(), a41 = zero(), a42 = zero(), a43 = zero(), a50 = zero(),
      a51 = zero(), a52 = zero(), a53 = zero();
  auto step = [&](int64_t k, auto m) __attribute__((always_inline)) {
    const Vec v0 = load_w(w0 + k, m), v1 = load_w(w1 + k, m), v2 = load_w(w2 + k, m), v3 = load_w(w3 + k, m);
    Vec x = load_x(x0 + k, m);
    a00 = fma(x, v0, a00), a01 = fma(x, v1, a01), a02 = fma(x, v2, a02), a03 = fma(x, v3, a03);
    x = load_x(x1 + k, m);
    a10 = fma(x, v0, a10), a11 = fma(x, v1, a11), a12 = fma(x, v2, a12), a13 = fma(x, v3, a13);
    x = load_x(x2 + k, m);
    a20 = fma(x, v0, a20), a21 = fma(x, v1, a21), a22 = fma(x, v2, a22), a23 = fma(x, v3, a23);
    x = load_x(x3 + k, m);
    a30 = fma(x, v0, a30), a31 = fma(x, v1, a31), a32 = fma(x, v2, a32), a33 = fma(x, v3, a33);
    x = load_x(x4 + k, m);
    a40 = fma(x, v0, a40), a41 = fma(x, v1, a41), a42 = fma(x, v2, a42), a43 = fma(x, v3, a43);
    x = load_x(x5 + k, m);
    a50 = fma(x, v0, a50), a51 = fma(x, v1, a51), a52 = fma(x, v2, a52), a53 = fma(x, v3, a53);
  };
  const int64_t full = K / kLanes * kLanes;
  for (int64_t k = 0; k < full; k += kLanes) step(k, tail_mask(kLanes));
  if (full < K) step(full, tail_mask(K - full));
  const Vec all[6][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23},
                         {a30, a31, a32, a33}, {a40, a41, a42, a43}, {a50, a51, a52, a53}};
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < kCols; ++c) out[r][c] = reduce(all[r][c]);
#else  // 16 vector registers: two blocks of three rows would spill; rows 0-3 then 4-5
  block4(K, xr, wr, out);
  block1(K, xr[4], wr, out[4]);
  block1(K, xr[5], wr, out[5]);
#endif
}

// R rows (1..6) x kCols outputs; every output summed in the same order either way.
template <class W, int R>
inline void block(int64_t K, const float* const* xr, const W* const* wr, float (*out)[kCols]) {
  if constexpr (R == 6) {
    block6(K, xr, wr, out);
  } else if constexpr (R >= 4) {
    block4(K, xr, wr, out);
    for (int r = 4; r < R; ++r) block1(K, xr[r], wr, out[r]);
  } else {
    for (int r = 0; r < R; ++r) block1(K, xr[r], wr, out[r]);
  }
}
#else
template <class W, int R>
inline void block(int64_t K, const float* const* xr, const W* const* wr, float (*out)[kCols]) {
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) {
      float acc[8] = {};
      for (int64_t k = 0; k < K; ++k) acc[k % 8] += xr[r][k] * weight(wr[c][k]);
      out[r][c] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    }
}
#endif

// Columns in panels of kPanel (a panel's weights stay in L2 while every row block
// streams through it), rows in blocks of kRows. Each output's sum is the same whatever
// the blocking and whichever thread computes it.
constexpr int64_t kPanel = 64;

template <class W>
void run(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const W* w, float* y, int64_t ldy) {
  prof::Scope scope(prof::GemmForward, 2.0 * static_cast<double>(M) * N * K);
  const int64_t panels = (N + kPanel - 1) / kPanel;
#pragma omp parallel for schedule(static) if (M * N * K > 32768)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t p0 = p * kPanel, p1 = std::min(N, p0 + kPanel);
    for (int64_t m0 = 0; m0 < M; m0 += kRows) {
      const float* xr[kRows];
      for (int r = 0; r < kRows; ++r) xr[r] = x + std::min<int64_t>(m0 + r, M - 1) * ldx;
      const int64_t left = M - m0;
      for (int64_t n0 = p0; n0 < p1; n0 += kCols) {
        const W* wr[kCols];
        for (int c = 0; c < kCols; ++c) wr[c] = w + std::min<int64_t>(n0 + c, N - 1) * K;  // past N: a repeat, dropped
        float out[kRows][kCols];
        if (left >= 6) block<W, 6>(K, xr, wr, out);
        else if (left == 5) block<W, 5>(K, xr, wr, out);
        else if (left == 4) block<W, 4>(K, xr, wr, out);
        else if (left == 3) block<W, 3>(K, xr, wr, out);
        else if (left == 2) block<W, 2>(K, xr, wr, out);
        else block<W, 1>(K, xr, wr, out);
        for (int r = 0; r < kRows && m0 + r < M; ++r)
          for (int c = 0; c < kCols && n0 + c < p1; ++c) y[(m0 + r) * ldy + n0 + c] = out[r][c];
      }
    }
  }
}

}  // namespace

void linear_rowexact(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, float* y,
                     int64_t ldy) {
  run(M, N, K, x, ldx, w, y, ldy);
}

void linear_rowexact(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const uint16_t* w, float* y,
                     int64_t ldy) {
  run(M, N, K, x, ldx, w, y, ldy);
}

}  // namespace mot::cpu
