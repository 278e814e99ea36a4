// Register-blocked micro-GEMMs for the attention tiles (private to attention.cpp).
//
// Every product attention needs is one shape:
//   C[M x N] (= or +=) A(M x K) · B[K x N]
// with B row-major (contiguous columns, so 8 of them are one vector load) and A
// addressed through two strides, A(r, k) = A[r*rs + k*ks]. A's elements are only ever
// broadcast, so a transposed A (Pᵀ, dSᵀ) costs nothing extra: rs = 1, ks = ld. Products
// with a transposed B (S = Q·Kᵀ, dP = dO·Vᵀ) use B packed once per (batch row, head) into
// 16-key panels, Kp[panel][c][16], which is the same kernel with ldb = 16.
//
// The kernel keeps an MR x 16 block of C in 12 AVX registers (MR = 6) and streams k:
// per k, 2 vector loads of B and 6 broadcasts of A feed 12 FMAs. It is written with
// GCC vector extensions and madd() below, so it compiles (slower) without AVX2/FMA too.
//
// Each call sums k in a fixed order, so results depend only on the inputs and the
// tile geometry, never on threads.
#pragma once
#include <algorithm>
#include <cstdint>
#if defined(__FMA__)
#include <immintrin.h>
#endif

namespace mot::cpu::attn_tiles {

// 8 floats; aligned(4) makes a dereference of any float pointer an unaligned load/store.
typedef float v8 __attribute__((vector_size(32), aligned(4)));

inline v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }  // one vbroadcastss

// a·b + c, explicitly fused where the CPU has FMA. Written out rather than left to
// -ffp-contract, whose choices differ between loops (an in-order vectorised reduction,
// for one, is not contracted): attention needs dO_i·O_i (scalar, madd(float)) and
// dO_i·V_j (this kernel) rounded identically, see row_dots in attention.cpp.
#if defined(__FMA__)
inline float madd(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline v8 madd(const v8& a, const v8& b, const v8& c) { return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }
#else  // x86 without FMA3: there is no fused instruction to contract into, either
inline float madd(float a, float b, float c) { return a * b + c; }
inline v8 madd(const v8& a, const v8& b, const v8& c) { return a * b + c; }
#endif

constexpr int kMR = 6;     // rows of C per register block
constexpr int kPanel = 16; // columns of C per register block (2 vectors); packed-panel width

// C[MR x 8·NV] (= or +=) sum_{k0 <= k < k1} A(r, k) · B[k*ldb + c]. A, B, C point at the
// block's first row/column; k indexes A and B from there.
template <int MR, int NV, bool Acc>
inline void micro(int64_t k0, int64_t k1, const float* A, int64_t rs, int64_t ks, const float* B, int64_t ldb,
                  float* C, int64_t ldc) {
  v8 c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = Acc ? *reinterpret_cast<const v8*>(C + r * ldc + 8 * v) : v8{};
  for (int64_t k = k0; k < k1; ++k) {
    const float* a = A + k * ks;
    const float* b = B + k * ldb;
    v8 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = *reinterpret_cast<const v8*>(b + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const float ar = a[r * rs];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = madd(bv[v], splat(ar), c[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) *reinterpret_cast<v8*>(C + r * ldc + 8 * v) = c[r][v];
}

// micro() with the row count chosen at run time (1 <= mr <= kMR).
template <int NV, bool Acc>
inline void micro_rows(int mr, int64_t k0, int64_t k1, const float* A, int64_t rs, int64_t ks, const float* B,
                       int64_t ldb, float* C, int64_t ldc) {
  switch (mr) {
    case 6: return micro<6, NV, Acc>(k0, k1, A, rs, ks, B, ldb, C, ldc);
    case 5: return micro<5, NV, Acc>(k0, k1, A, rs, ks, B, ldb, C, ldc);
    case 4: return micro<4, NV, Acc>(k0, k1, A, rs, ks, B, ldb, C, ldc);
    case 3: return micro<3, NV, Acc>(k0, k1, A, rs, ks, B, ldb, C, ldc);
    case 2: return micro<2, NV, Acc>(k0, k1, A, rs, ks, B, ldb, C, ldc);
    default: return micro<1, NV, Acc>(k0, k1, A, rs, ks, B, ldb, C, ldc);
  }
}

// C[M x N] += A · B where the rows [r0, r1) of each register block only sum k over
// krange(r0, r1) -> {k0, k1}: A's other entries there are known to be zero (masked
// probabilities), so the causal triangle and other documents cost nothing.
template <class KRange>
void gemm_acc(int64_t M, int64_t N, const float* A, int64_t rs, int64_t ks, const float* B, int64_t ldb, float* C,
              int64_t ldc, const KRange& krange) {
  for (int64_t r0 = 0; r0 < M; r0 += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, M - r0));
    const auto [k0, k1] = krange(r0, r0 + mr);
    if (k0 >= k1) continue;
    const float* a = A + r0 * rs;
    float* c = C + r0 * ldc;
    int64_t c0 = 0;
    for (; c0 + 16 <= N; c0 += 16) micro_rows<2, true>(mr, k0, k1, a, rs, ks, B + c0, ldb, c + c0, ldc);
    for (; c0 + 8 <= N; c0 += 8) micro_rows<1, true>(mr, k0, k1, a, rs, ks, B + c0, ldb, c + c0, ldc);
    for (; c0 < N; ++c0)  // head dims that are not a multiple of 8
      for (int r = 0; r < mr; ++r) {
        float s = c[r * ldc + c0];
        for (int64_t k = k0; k < k1; ++k) s = madd(a[r * rs + k * ks], B[k * ldb + c0], s);
        c[r * ldc + c0] = s;
      }
  }
}

// Packs alpha·X[n x hd] (rows = keys) into 16-key panels P[panel][c][16] for the
// products with Xᵀ; keys n..(rounded up to 16) are zero.
inline void pack_panels(int64_t n, int64_t hd, const float* X, float alpha, float* P) {
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    float* dst = P + p0 * hd;
    const int64_t m = std::min<int64_t>(kPanel, n - p0);
    for (int64_t c = 0; c < hd; ++c) {
      for (int64_t j = 0; j < m; ++j) dst[c * kPanel + j] = alpha * X[(p0 + j) * hd + c];
      for (int64_t j = m; j < kPanel; ++j) dst[c * kPanel + j] = 0.0f;
    }
  }
}

// S[M x ·] = A[M x K] · panelsᵀ (A rows at stride lda): row block [r0, r1) fills only the
// key columns cols(r0, r1) -> {lo, hi}, rounded out to whole panels; the rest of S is
// left as it was (the caller masks it). panels points at the tile's first panel.
template <class Cols>
void gemm_scores(int64_t M, int64_t K, const float* A, int64_t lda, const float* panels, float* S, int64_t lds,
                 const Cols& cols) {
  for (int64_t r0 = 0; r0 < M; r0 += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, M - r0));
    const auto [lo, hi] = cols(r0, r0 + mr);
    for (int64_t p = lo / kPanel; p * kPanel < hi; ++p)
      micro_rows<2, false>(mr, 0, K, A + r0 * lda, lda, 1, panels + p * K * kPanel, kPanel, S + r0 * lds + p * kPanel,
                           lds);
  }
}

}  // namespace mot::cpu::attn_tiles
