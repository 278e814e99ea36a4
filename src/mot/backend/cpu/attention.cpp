#include "mot/backend/cpu/attention.hpp"

#include "mot/backend/cpu/fast_exp.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace mot::cpu {

namespace {

constexpr int64_t kBr = 64;  // query rows per tile
constexpr int64_t kBc = 64;  // key rows per tile
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Per-thread tile scratch, sized on first use (the first step) and then reused.
struct Scratch {
  std::vector<float> S, acc, m, l;
  void ensure(int64_t hd) {
    if (static_cast<int64_t>(acc.size()) < kBr * hd) {
      S.resize(kBr * kBc);
      acc.resize(kBr * hd);
      m.resize(kBr);
      l.resize(kBr);
    }
  }
};
thread_local Scratch tls;

}  // namespace

void attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V,
                       const int32_t* row_len, const int32_t* doc_start, float* O, float* lse) {
  const int64_t T = s.T, hd = s.hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      Scratch& w = tls;
      w.ensure(hd);
      const int64_t L = row_len[b], base = (b * s.H + h) * T;
      const float* q = Q + base * hd;
      const float* k = K + base * hd;
      const float* v = V + base * hd;
      float* o = O + base * hd;
      float* ls = lse + base;
      const int32_t* ds = doc_start + b * T;
      for (int64_t i0 = 0; i0 < L; i0 += kBr) {
        const int64_t i1 = std::min(L, i0 + kBr), nr = i1 - i0;
        std::fill(w.m.begin(), w.m.begin() + nr, kNegInf);
        std::fill(w.l.begin(), w.l.begin() + nr, 0.0f);
        std::fill(w.acc.begin(), w.acc.begin() + nr * hd, 0.0f);
        // Keys visible to any query of the tile: [doc_start[i0], i1).
        for (int64_t j0 = ds[i0] / kBc * kBc; j0 < i1; j0 += kBc) {
          const int64_t j1 = std::min(i1, j0 + kBc);
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t lo = std::max<int64_t>(j0, ds[i]), hi = std::min(j1, i + 1);
            if (lo >= hi) continue;
            float* srow = w.S.data();
            float mx = w.m[i - i0];
            for (int64_t j = lo; j < hi; ++j) {
              srow[j - lo] = dot(q + i * hd, k + j * hd, hd) * scale;
              mx = std::max(mx, srow[j - lo]);
            }
            const float corr = fast_exp(w.m[i - i0] - mx);  // exp(-inf) = 0 on the first visit
            float* a = w.acc.data() + (i - i0) * hd;
            float lsum = w.l[i - i0] * corr;
            for (int64_t c = 0; c < hd; ++c) a[c] *= corr;
            for (int64_t j = lo; j < hi; ++j) {
              const float p = fast_exp(srow[j - lo] - mx);
              lsum += p;
              axpy(p, v + j * hd, a, hd);
            }
            w.m[i - i0] = mx;
            w.l[i - i0] = lsum;
          }
        }
        for (int64_t i = i0; i < i1; ++i) {
          const float inv = 1.0f / w.l[i - i0];
          const float* a = w.acc.data() + (i - i0) * hd;
          for (int64_t c = 0; c < hd; ++c) o[i * hd + c] = a[c] * inv;
          ls[i] = w.m[i - i0] + std::log(w.l[i - i0]);
        }
      }
    }
  }
}

void attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V,
                        const float* O, const float* lse, const float* dO, const int32_t* row_len,
                        const int32_t* doc_start, float* dQ, float* dK, float* dV) {
  const int64_t T = s.T, hd = s.hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      Scratch& w = tls;
      w.ensure(hd);
      const int64_t L = row_len[b], base = (b * s.H + h) * T;
      const float* q = Q + base * hd;
      const float* k = K + base * hd;
      const float* v = V + base * hd;
      const float* o = O + base * hd;
      const float* go = dO + base * hd;
      const float* ls = lse + base;
      float* gq = dQ + base * hd;
      float* gk = dK + base * hd;
      float* gv = dV + base * hd;
      const int32_t* ds = doc_start + b * T;
      std::memset(gq, 0, sizeof(float) * T * hd);
      std::memset(gk, 0, sizeof(float) * T * hd);
      std::memset(gv, 0, sizeof(float) * T * hd);
      // D_i = dO_i · O_i (the softmax backward's row term); reuse the m scratch per tile.
      for (int64_t i0 = 0; i0 < L; i0 += kBr) {
        const int64_t i1 = std::min(L, i0 + kBr);
        float* D = w.m.data();
        for (int64_t i = i0; i < i1; ++i) D[i - i0] = dot(go + i * hd, o + i * hd, hd);
        for (int64_t j0 = ds[i0] / kBc * kBc; j0 < i1; j0 += kBc) {
          const int64_t j1 = std::min(i1, j0 + kBc);
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t lo = std::max<int64_t>(j0, ds[i]), hi = std::min(j1, i + 1);
            if (lo >= hi) continue;
            const float* qi = q + i * hd;
            const float* goi = go + i * hd;
            float* gqi = gq + i * hd;
            for (int64_t j = lo; j < hi; ++j) {
              const float p = fast_exp(dot(qi, k + j * hd, hd) * scale - ls[i]);
              axpy(p, goi, gv + j * hd, hd);                        // dV_j += P_ij dO_i
              const float dp = dot(goi, v + j * hd, hd);            // dP_ij = dO_i · V_j
              const float dsij = p * (dp - D[i - i0]) * scale;      // dS_ij (scaled)
              axpy(dsij, k + j * hd, gqi, hd);                      // dQ_i += dS_ij K_j
              axpy(dsij, qi, gk + j * hd, hd);                      // dK_j += dS_ij Q_i
            }
          }
        }
      }
    }
  }
}

}  // namespace mot::cpu
