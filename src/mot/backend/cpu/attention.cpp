#include "mot/backend/cpu/attention.hpp"

// The tile kernels pass 32-byte vectors between inline functions. In a build without
// AVX (MOT_NATIVE=OFF) GCC and clang warn that such functions' calling convention would
// differ from an AVX build's; none of them is called from another translation unit.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "mot/backend/cpu/attention_tiles.hpp"
#include "mot/backend/cpu/fast_exp.hpp"
#include "mot/core/profile.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

// Both passes work on tiles of kBr queries x kBc keys of one (batch row, head), and every
// product on a tile is a register-blocked micro-GEMM (attention_tiles.hpp):
//   forward   S = Q·Kᵀ, online softmax of S's rows, O += P·V
//   backward  S = Q·Kᵀ, P = exp(S - lse), dP = dO·Vᵀ, dS = P∘(dP - D),
//             dV += Pᵀ·dO, dK += dSᵀ·Q, dQ += dS·K          (D_i = dO_i·O_i)
//
// Kᵀ and Vᵀ are K and V packed into 16-key panels once per (row, head). The softmax
// scale 1/sqrt(hd) is folded into the packed K, so S comes out scaled: there is no
// separate multiply that the compiler could fuse into exp's argument in one loop and not
// in another, so a row's largest score gives exp(s - m) = 1 exactly and a query that sees
// a single key gets O = V bit for bit (and, with D summed like dP, a zero gradient).
//
// Masking: each query sees one range of keys (attention.hpp). A tile none of whose
// queries sees any of its keys is skipped. Inside a tile, each 6-row register block
// computes only the key columns from its rows' lowest range start to their highest range
// end (or, for dV and dK, the queries of the tile from the first to the last that sees
// one of its 6 keys), so the causal triangle and other documents cost little. The
// per-element mask is applied once, in the softmax / dS pass, by writing exact zeros;
// the products that follow can then sum over whole ranges (a term with a masked factor
// adds an exact zero).
//
// Work is split over (row, head) tasks. Each task owns its outputs (no atomics) and runs
// the same sequence of operations whichever thread takes it, so results are bit-for-bit
// identical for any thread count.

namespace mot::cpu {

namespace {

using attn_tiles::gemm_acc;
using attn_tiles::gemm_scores;
using attn_tiles::kPanel;
using attn_tiles::madd;
using attn_tiles::pack_panels;

// Tile sizes: multiples of the 6-row register block and of the 16-key panel, so that only
// a row's last tile has partial blocks. Within +-5% of each other from 32 to 144 on
// Zen 3 (hd 32 and 64, T 512); these two were the best.
constexpr int64_t kBr = 48;  // query rows per tile
constexpr int64_t kBc = 96;  // keys per tile; a multiple of kPanel (tiles start on panels)
static_assert(kBr % attn_tiles::kMR == 0 && kBc % attn_tiles::kMR == 0);
static_assert(kBc % kPanel == 0 && kPanel % 8 == 0);
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Range {
  int64_t lo, hi;
};

// Key columns of the key tile [j0, j0 + nc) that the queries [q0, q1) may see: from the
// lowest start to the highest end of their ranges (empty ranges ignored), clipped to the
// tile. Columns relative to j0; empty when lo >= hi. lo, hi: the row's ranges.
inline Range keys_seen(const int32_t* lo, const int32_t* hi, int64_t q0, int64_t q1, int64_t j0, int64_t nc) {
  int64_t a = std::numeric_limits<int32_t>::max(), z = std::numeric_limits<int32_t>::min();
  for (int64_t q = q0; q < q1; ++q)
    if (lo[q] < hi[q]) {
      a = std::min<int64_t>(a, lo[q]);
      z = std::max<int64_t>(z, hi[q]);
    }
  return {std::max<int64_t>(a - j0, 0), std::min(z - j0, nc)};
}

// Whether query q sees at least one of the keys [k0, k1).
inline bool sees(const int32_t* lo, const int32_t* hi, int64_t q, int64_t k0, int64_t k1) {
  return lo[q] < hi[q] && lo[q] < k1 && hi[q] > k0;
}
inline bool any_sees(const int32_t* lo, const int32_t* hi, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  for (int64_t q = q0; q < q1; ++q)
    if (sees(lo, hi, q, k0, k1)) return true;
  return false;
}

// Columns [lo, hi) of the key tile starting at j0 (nc keys) that a query with the range
// [lo_i, hi_i) sees (none when lo >= hi); 32-bit so that the per-element masks of the
// softmax loops vectorise as 8-wide compares.
inline int visible_lo(int32_t lo_i, int64_t j0) { return static_cast<int>(std::max<int64_t>(lo_i - j0, 0)); }
inline int visible_hi(int32_t hi_i, int64_t j0, int64_t nc) {
  return static_cast<int>(std::max<int64_t>(std::min<int64_t>(hi_i - j0, nc), 0));
}

// max of p[lo, hi) (lo < hi), a vector at a time over p[lo rounded down to 8, hi rounded
// up to 8) with the other lanes masked: the caller's row has room for that (kBc % 8 == 0).
inline float masked_max(const float* p, int lo, int hi) {
  using attn_tiles::splat;
  using attn_tiles::v8;
  typedef int32_t v8i __attribute__((vector_size(32)));
  const v8i iota = {0, 1, 2, 3, 4, 5, 6, 7};
  v8 mx = splat(kNegInf);
  for (int j = lo / 8 * 8; j < hi; j += 8) {
    const v8i idx = iota + j;
    v8 x = *reinterpret_cast<const v8*>(p + j);
    x = ((idx >= lo) & (idx < hi)) ? x : splat(kNegInf);
    mx = x > mx ? x : mx;
  }
  float r = mx[0];
  for (int t = 1; t < 8; ++t) r = std::max(r, mx[t]);
  return r;
}

// D[i] = dO_i · O_i for i < n, summed over c in order with one madd per term, exactly as
// the micro-GEMM sums dP_ij = dO_i · V_j. Where a query sees a single key, O_i is V_j
// bit for bit and dP_ij - D_i must come out exactly 0 (as the true gradient is). Eight
// rows at a time keep eight independent chains in flight.
inline void row_dots(int64_t n, int64_t hd, const float* dO, const float* O, float* D) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    float d[8] = {};
    for (int64_t c = 0; c < hd; ++c)
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) d[r] = madd(dO[(i + r) * hd + c], O[(i + r) * hd + c], d[r]);
    std::copy(d, d + 8, D + i);
  }
  for (; i < n; ++i) {
    float d = 0.0f;
    for (int64_t c = 0; c < hd; ++c) d = madd(dO[i * hd + c], O[i * hd + c], d);
    D[i] = d;
  }
}

// Per-thread scratch, sized on first use (the first step) and then reused, so that
// steady-state steps allocate nothing.
struct Scratch {
  std::vector<float> kp, vp;  // K, V of one (row, head) in 16-key panels [Tk/16][hd][16]
  std::vector<float> S, dP;   // [kBr x kBc]: scores, then probabilities in place; dP, then dS
  std::vector<float> acc;     // [kBr x hd]: forward's unnormalised output rows
  std::vector<float> m, l;    // [kBr]: forward's running row max and row sum
  std::vector<float> D;       // [Tq]: backward's rowsum(dO ∘ O)
  void ensure(int64_t Tq, int64_t Tk, int64_t hd) {
    const auto grow = [](std::vector<float>& v, int64_t n) {
      if (static_cast<int64_t>(v.size()) < n) v.resize(n);
    };
    const int64_t Tp = (Tk + kPanel - 1) / kPanel * kPanel;
    grow(kp, Tp * hd);
    grow(vp, Tp * hd);
    grow(S, kBr * kBc);
    grow(dP, kBr * kBc);
    grow(acc, kBr * hd);
    grow(m, kBr);
    grow(l, kBr);
    grow(D, Tq);
  }
};
thread_local Scratch tls;

}  // namespace

// Σ p[lo, hi) (lo < hi) in an order that depends on lo and hi alone: 8 lanes by column
// index mod 8 over whole vectors from lo rounded down to 8, other lanes masked, then a
// fixed reduction. A vectorised reduction over the tile's nc columns would group the
// terms by nc, which is the query tile's extent: a query alone against the KV cache
// (generation) and the same query inside its whole prefix would then round its softmax
// denominator differently once nc spans two vectors.
inline float masked_sum(const float* p, int lo, int hi) {
  using attn_tiles::splat;
  using attn_tiles::v8;
  typedef int32_t v8i __attribute__((vector_size(32)));
  const v8i iota = {0, 1, 2, 3, 4, 5, 6, 7};
  v8 acc = splat(0.0f);
  for (int j = lo / 8 * 8; j < hi; j += 8) {
    const v8i idx = iota + j;
    const v8 x = *reinterpret_cast<const v8*>(p + j);
    acc += ((idx >= lo) & (idx < hi)) ? x : splat(0.0f);
  }
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V, const KeyRanges& kr,
                       float* O, float* lse) {
  prof::Scope prof_scope(prof::AttentionForward);
  const int64_t Tq = s.Tq, Tk = s.Tk, hd = s.hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t Lq = kr.q_len[b], Lk = kr.k_len[b];
      const int64_t qbase = (b * s.H + h) * Tq, kbase = (b * s.H + h) * Tk;
      if (Lq == 0) continue;
      Scratch& w = tls;
      w.ensure(Tq, Tk, hd);
      const float* q = Q + qbase * hd;
      const float* k = K + kbase * hd;
      const float* v = V + kbase * hd;
      float* o = O + qbase * hd;
      float* ls = lse + qbase;
      const int32_t* lo = kr.lo + b * Tq;
      const int32_t* hi = kr.hi + b * Tq;
      pack_panels(Lk, hd, k, scale, w.kp.data());
      float* S = w.S.data();
      float* acc = w.acc.data();
      float* m = w.m.data();
      float* l = w.l.data();
      for (int64_t i0 = 0; i0 < Lq; i0 += kBr) {
        const int64_t nr = std::min(Lq, i0 + kBr) - i0;
        std::fill(m, m + nr, kNegInf);
        std::fill(l, l + nr, 0.0f);
        std::fill(acc, acc + nr * hd, 0.0f);
        // Key tiles from the one holding the tile's earliest visible key to its last
        // visible key (the diagonal, for causal ranges); none if every range is empty.
        const Range keys = keys_seen(lo, hi, i0, i0 + nr, 0, Lk);
        for (int64_t j0 = keys.lo / kBc * kBc; j0 < keys.hi; j0 += kBc) {
          // Keys after the tile's last visible one are not read (for causal ranges: past
          // the diagonal). The row sums below do not depend on nc (masked_sum), so a query
          // gets the same bits whichever other queries share its tile.
          const int64_t nc = std::min(keys.hi, j0 + kBc) - j0;
          if (!any_sees(lo, hi, i0, i0 + nr, j0, j0 + nc)) continue;  // a gap between the rows' ranges
          const int ncj = static_cast<int>(nc);
          const auto seen = [&](int64_t r0, int64_t r1) { return keys_seen(lo, hi, i0 + r0, i0 + r1, j0, nc); };
          gemm_scores(nr, hd, q + i0 * hd, hd, w.kp.data() + j0 * hd, S, kBc, seen);  // S = Q·(scale·K)ᵀ
          // Online softmax, in place: S's row becomes exp(S - m_new), zero where masked
          // (including columns gemm_scores skipped), and the row's running state is rescaled.
          for (int64_t r = 0; r < nr; ++r) {
            const int64_t i = i0 + r;
            const int vlo = visible_lo(lo[i], j0), vhi = visible_hi(hi[i], j0, nc);
            float* p = S + r * kBc;
            if (vlo >= vhi) {  // this row sees none of these keys (another document, an empty range)
              std::fill(p, p + nc, 0.0f);
              continue;
            }
            const float mx = std::max(m[r], masked_max(p, vlo, vhi));
#pragma omp simd
            for (int j = 0; j < ncj; ++j) {
              const float e = fast_exp(p[j] - mx);
              p[j] = (j >= vlo && j < vhi) ? e : 0.0f;
            }
            const float sum = masked_sum(p, vlo, vhi);
            const float corr = fast_exp(m[r] - mx);  // 0 on the row's first visible tile (m = -inf)
            m[r] = mx;
            l[r] = l[r] * corr + sum;
            if (corr != 1.0f) {
              float* a = acc + r * hd;
#pragma omp simd
              for (int64_t c = 0; c < hd; ++c) a[c] *= corr;
            }
          }
          gemm_acc(nr, hd, S, kBc, 1, v + j0 * hd, hd, acc, hd, seen);  // acc += P·V
        }
        for (int64_t r = 0; r < nr; ++r) {
          float* out = o + (i0 + r) * hd;
          if (l[r] == 0.0f) {  // an empty range (a visible key contributes exp(0) = 1 to l)
            std::fill(out, out + hd, 0.0f);
            ls[i0 + r] = kNegInf;
            continue;
          }
          const float inv = 1.0f / l[r];
          const float* a = acc + r * hd;
#pragma omp simd
          for (int64_t c = 0; c < hd; ++c) out[c] = a[c] * inv;
          ls[i0 + r] = m[r] + std::log(l[r]);
        }
      }
    }
  }
}

void attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V, const float* O,
                        const float* lse, const float* dO, const KeyRanges& kr, float* dQ, float* dK, float* dV) {
  prof::Scope prof_scope(prof::AttentionBackward);
  const int64_t Tq = s.Tq, Tk = s.Tk, hd = s.hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t Lq = kr.q_len[b], Lk = kr.k_len[b];
      const int64_t qbase = (b * s.H + h) * Tq, kbase = (b * s.H + h) * Tk;
      const float* q = Q + qbase * hd;
      const float* k = K + kbase * hd;
      const float* v = V + kbase * hd;
      const float* o = O + qbase * hd;
      const float* go = dO + qbase * hd;
      const float* ls = lse + qbase;
      float* gq = dQ + qbase * hd;
      float* gk = dK + kbase * hd;
      float* gv = dV + kbase * hd;
      const int32_t* lo = kr.lo + b * Tq;
      const int32_t* hi = kr.hi + b * Tq;
      std::memset(gq, 0, sizeof(float) * Tq * hd);
      std::memset(gk, 0, sizeof(float) * Tk * hd);
      std::memset(gv, 0, sizeof(float) * Tk * hd);
      if (Lq == 0 || Lk == 0) continue;
      Scratch& w = tls;
      w.ensure(Tq, Tk, hd);
      pack_panels(Lk, hd, k, scale, w.kp.data());
      pack_panels(Lk, hd, v, 1.0f, w.vp.data());
      float* D = w.D.data();
      row_dots(Lq, hd, go, o, D);
      float* P = w.S.data();
      float* dS = w.dP.data();
      // Key tiles outer: dK and dV of the tile stay hot while the query tiles that see it
      // stream past; dQ accumulates across key tiles in fixed order.
      for (int64_t j0 = 0; j0 < Lk; j0 += kBc) {
        const int64_t nc = std::min(Lk, j0 + kBc) - j0;
        const int ncj = static_cast<int>(nc);
        // Query tiles from the one holding the first query that sees a key of this tile.
        // Not from the diagonal: inside a bidirectional span, queries before a key see it.
        int64_t first = 0;
        while (first < Lq && !sees(lo, hi, first, j0, j0 + nc)) ++first;
        for (int64_t i0 = first / kBr * kBr; i0 < Lq; i0 += kBr) {
          const int64_t nr = std::min(Lq, i0 + kBr) - i0;
          if (!any_sees(lo, hi, i0, i0 + nr, j0, j0 + nc)) continue;  // e.g. all in a later document
          const auto seen = [&](int64_t r0, int64_t r1) { return keys_seen(lo, hi, i0 + r0, i0 + r1, j0, nc); };
          // Queries of the tile (columns of Pᵀ, dSᵀ) that see one of the keys j0 + [r0, r1):
          // from the first to the last such query, per 6-key block, computed once for dV and dK.
          Range seer[kBc / attn_tiles::kMR];
          for (int64_t r0 = 0; r0 < nc; r0 += attn_tiles::kMR) {
            const int64_t k0 = j0 + r0, k1 = std::min(j0 + nc, k0 + attn_tiles::kMR);
            int64_t a = 0, z = nr;
            while (a < nr && !sees(lo, hi, i0 + a, k0, k1)) ++a;
            while (z > a && !sees(lo, hi, i0 + z - 1, k0, k1)) --z;
            seer[r0 / attn_tiles::kMR] = {a, z};
          }
          const auto seers = [&](int64_t r0, int64_t) { return seer[r0 / attn_tiles::kMR]; };
          gemm_scores(nr, hd, q + i0 * hd, hd, w.kp.data() + j0 * hd, P, kBc, seen);    // S = Q·(scale·K)ᵀ
          gemm_scores(nr, hd, go + i0 * hd, hd, w.vp.data() + j0 * hd, dS, kBc, seen);  // dP = dO·Vᵀ
          // P = exp(S - lse) and dS = P∘(dP - D)·scale, exact zeros where masked
          // (including the columns gemm_scores skipped, which hold stale values).
          for (int64_t r = 0; r < nr; ++r) {
            const int64_t i = i0 + r;
            const int vlo = visible_lo(lo[i], j0), vhi = visible_hi(hi[i], j0, nc);
            const float li = ls[i], Di = D[i];
            float* p = P + r * kBc;
            float* g = dS + r * kBc;
#pragma omp simd
            for (int j = 0; j < ncj; ++j) {
              const bool vis = j >= vlo && j < vhi;
              const float e = fast_exp(p[j] - li);
              p[j] = vis ? e : 0.0f;
              g[j] = vis ? e * (g[j] - Di) * scale : 0.0f;
            }
          }
          gemm_acc(nc, hd, P, 1, kBc, go + i0 * hd, hd, gv + j0 * hd, hd, seers);  // dV += Pᵀ·dO
          gemm_acc(nc, hd, dS, 1, kBc, q + i0 * hd, hd, gk + j0 * hd, hd, seers);  // dK += dSᵀ·Q
          gemm_acc(nr, hd, dS, kBc, 1, k + j0 * hd, hd, gq + i0 * hd, hd, seen);   // dQ += dS·K
        }
      }
    }
  }
}

}  // namespace mot::cpu
