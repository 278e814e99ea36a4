// Rows <-> heads for attention: sorted rows of qkv ([N, 3d]) go to Q, K, V in
// [B, H, T, hd] at their position's slot, through the per-head QK-norm (weights of the
// row's own copy) and RoPE; the attention output comes back to sorted rows with heads
// concatenated. Each backward undoes its forward, next to it.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/cpu_backend.hpp"
#include "mot/backend/cpu/kernels.hpp"

namespace mot::cpu {

namespace {

inline void rope(float* x, const float* cs, const float* sn, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cs[i] - b * sn[i];
    x[i + half] = b * cs[i] + a * sn[i];
  }
}

inline void rope_backward(float* g, const float* cs, const float* sn, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = g[i], b = g[i + half];
    g[i] = a * cs[i] + b * sn[i];
    g[i + half] = b * cs[i] - a * sn[i];
  }
}

}  // namespace

void CpuBackend::heads_forward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk,
                               float* Q, float* K, float* V) {
  const int64_t H = lay.H, hd = lay.hd, half = hd / 2, d = H * hd, Tq = lay.Tq, Tk = lay.Tk;
  const float* qw = qk.q_w;
  const float* kw = qk.k_w;
  const float eps = qk.eps;
#pragma omp parallel for schedule(static)
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t b = lay.q_slot[s] / Tq, t = lay.q_slot[s] % Tq;
    const int64_t kb = lay.kv_slot[s] / Tk, key = lay.kv_slot[s] % Tk;
    const float* cs = lay.rope_cos + lay.pos[s] * half;
    const float* sn = lay.rope_sin + lay.pos[s] * half;
    const float* row = qkv.row(s);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t q_at = ((b * H + h) * Tq + t) * hd, kv_at = ((kb * H + h) * Tk + key) * hd;
      float* q = Q + q_at;
      float* k = K + kv_at;
      std::memcpy(q, row + h * hd, sizeof(float) * hd);
      std::memcpy(k, row + d + h * hd, sizeof(float) * hd);
      std::memcpy(V + kv_at, row + 2 * d + h * hd, sizeof(float) * hd);
      if (qw) {
        float sq = 0.0f, sk = 0.0f;
        for (int64_t i = 0; i < hd; ++i) { sq += q[i] * q[i]; sk += k[i] * k[i]; }
        const float rq = 1.0f / std::sqrt(sq / hd + eps), rk = 1.0f / std::sqrt(sk / hd + eps);
        qk.rstd[s * 2 * H + h] = rq;
        qk.rstd[s * 2 * H + H + h] = rk;
        for (int64_t i = 0; i < hd; ++i) { q[i] *= rq * qw[i]; k[i] *= rk * kw[i]; }
      }
      rope(q, cs, sn, half);
      rope(k, cs, sn, half);
    }
  }
}

// Undo RoPE, then the QK-norm backward; its weight gradients are summed in
// kReduceChunks partial sums in a fixed order (deterministic for any thread count).
void CpuBackend::heads_backward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk,
                                const float* dQ, const float* dK, const float* dV, Mat dqkv, float* dq_w,
                                float* dk_w) {
  const int64_t H = lay.H, hd = lay.hd, half = hd / 2, d = H * hd, Tq = lay.Tq, Tk = lay.Tk;
  const float* qw = qk.q_w;
  const float* kw = qk.k_w;
  const int64_t n = s1 - s0, per = (n + kReduceChunks - 1) / kReduceChunks;
  float* part = scratch_.reduce;  // [chunks][2 * hd]: q-norm and k-norm weight gradients
  if (qw) std::memset(part, 0, sizeof(float) * kReduceChunks * 2 * hd);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kReduceChunks; ++c) {
    float* pq = part + c * 2 * hd;
    float* pk = pq + hd;
    const int64_t c1 = std::min(s1, s0 + (c + 1) * per);
    for (int64_t s = s0 + c * per; s < c1; ++s) {
      const int64_t b = lay.q_slot[s] / Tq, t = lay.q_slot[s] % Tq;
      const int64_t kb = lay.kv_slot[s] / Tk, key = lay.kv_slot[s] % Tk;
      const float* cs = lay.rope_cos + lay.pos[s] * half;
      const float* sn = lay.rope_sin + lay.pos[s] * half;
      const float* raw = qkv.row(s);
      float* drow = dqkv.row(s);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t q_at = ((b * H + h) * Tq + t) * hd, kv_at = ((kb * H + h) * Tk + key) * hd;
        float* dq = drow + h * hd;
        float* dk = drow + d + h * hd;
        std::memcpy(dq, dQ + q_at, sizeof(float) * hd);
        std::memcpy(dk, dK + kv_at, sizeof(float) * hd);
        std::memcpy(drow + 2 * d + h * hd, dV + kv_at, sizeof(float) * hd);
        rope_backward(dq, cs, sn, half);
        rope_backward(dk, cs, sn, half);
        if (!qw) continue;
        // y = x * r * w:  dx = r (dy ⊙ w) - x r³ mean(dy ⊙ w ⊙ x);  dw += dy ⊙ x r
        for (int which = 0; which < 2; ++which) {
          float* dy = which ? dk : dq;
          const float* x = raw + (which ? d : 0) + h * hd;
          const float* wt = which ? kw : qw;
          float* pw = which ? pk : pq;
          const float r = qk.rstd[s * 2 * H + (which ? H : 0) + h];
          float dot = 0.0f;
          for (int64_t i = 0; i < hd; ++i) dot += dy[i] * wt[i] * x[i];
          const float kk = r * r * r * dot / hd;
          for (int64_t i = 0; i < hd; ++i) {
            pw[i] += dy[i] * x[i] * r;
            dy[i] = r * dy[i] * wt[i] - kk * x[i];
          }
        }
      }
    }
  }
  if (qw) {
    for (int64_t c = 0; c < kReduceChunks; ++c)
      for (int64_t i = 0; i < hd; ++i) {
        dq_w[i] += part[c * 2 * hd + i];
        dk_w[i] += part[c * 2 * hd + hd + i];
      }
  }
}

void CpuBackend::heads_to_rows(const HeadLayout& lay, const float* O, Mat cat) {
  const int64_t H = lay.H, hd = lay.hd, T = lay.Tq;
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < cat.rows; ++s) {
    const int64_t b = lay.q_slot[s] / T, t = lay.q_slot[s] % T;
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(cat.row(s) + h * hd, O + ((b * H + h) * T + t) * hd, sizeof(float) * hd);
  }
}

void CpuBackend::rows_to_heads(const HeadLayout& lay, ConstMat dcat, float* dO) {
  const int64_t H = lay.H, hd = lay.hd, T = lay.Tq;
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < dcat.rows; ++s) {
    const int64_t b = lay.q_slot[s] / T, t = lay.q_slot[s] % T;
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(dO + ((b * H + h) * T + t) * hd, dcat.row(s) + h * hd, sizeof(float) * hd);
  }
}

}  // namespace mot::cpu
