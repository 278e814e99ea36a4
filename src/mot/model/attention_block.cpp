// Attention sublayer. Projections run per weight copy on contiguous sorted rows; the
// attention itself runs in sequence order over all positions of every modality:
//   qkv = x · [Wq; Wk; Wv]ᵀ           (one GEMM per copy)
//   q, k <- RoPE(QKNorm(q, k))        (per position, written to [B, H, T, hd])
//   O = softmax(q kᵀ/sqrt(hd) + mask) v
//   out = concat_heads(O) · Woᵀ       (one GEMM per copy)
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/attention.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/model/model.hpp"

namespace mot {

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

void Model::attention_forward(int l, const float* in, float* out) {
  LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const int64_t d = cfg_.dim, H = cfg_.n_heads, hd = cfg_.head_dim(), half = hd / 2, T = rt_.T;
  const float eps = static_cast<float>(cfg_.norm_eps);
  const auto& groups = rt_.groups[static_cast<int>(Component::Attention)];
  for (const RowGroup& g : groups)
    mm_.nt(g.end - g.begin, 3 * d, d, in + g.begin * d, d, wmat_ + w.wqkv[g.copy], d, a.qkv + g.begin * 3 * d,
                 3 * d, 0.0f);
  // To heads: QK-norm (weights of the position's own modality), RoPE, scatter.
  for (const RowGroup& g : groups) {
    const float* qw = cfg_.qk_norm ? params_ + w.q_norm[g.copy] : nullptr;
    const float* kw = cfg_.qk_norm ? params_ + w.k_norm[g.copy] : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t s = g.begin; s < g.end; ++s) {
      const int64_t b = rt_.perm[s] / T, t = rt_.perm[s] % T;
      const float* cs = ws_.rope_cos + rt_.pos[s] * half;
      const float* sn = ws_.rope_sin + rt_.pos[s] * half;
      const float* row = a.qkv + s * 3 * d;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t dst = ((b * H + h) * T + t) * hd;
        float* q = a.Q + dst;
        float* k = a.K + dst;
        std::memcpy(q, row + h * hd, sizeof(float) * hd);
        std::memcpy(k, row + d + h * hd, sizeof(float) * hd);
        std::memcpy(a.V + dst, row + 2 * d + h * hd, sizeof(float) * hd);
        if (qw) {
          float sq = 0.0f, sk = 0.0f;
          for (int64_t i = 0; i < hd; ++i) { sq += q[i] * q[i]; sk += k[i] * k[i]; }
          const float rq = 1.0f / std::sqrt(sq / hd + eps), rk = 1.0f / std::sqrt(sk / hd + eps);
          a.qk_rstd[s * 2 * H + h] = rq;
          a.qk_rstd[s * 2 * H + H + h] = rk;
          for (int64_t i = 0; i < hd; ++i) { q[i] *= rq * qw[i]; k[i] *= rk * kw[i]; }
        }
        rope(q, cs, sn, half);
        rope(k, cs, sn, half);
      }
    }
  }
  const cpu::KeyRanges kr{rt_.row_len.data(), rt_.row_len.data(), rt_.kv_lo.data(), rt_.kv_hi.data()};
  cpu::attention_forward({rt_.B, H, T, T, hd}, a.Q, a.K, a.V, kr, a.O, a.lse);
  // Back to sorted rows, heads concatenated.
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < rt_.N; ++s) {
    const int64_t b = rt_.perm[s] / T, t = rt_.perm[s] % T;
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(a.cat + s * d + h * hd, a.O + ((b * H + h) * T + t) * hd, sizeof(float) * hd);
  }
  for (const RowGroup& g : groups)
    mm_.nt(g.end - g.begin, d, d, a.cat + g.begin * d, d, wmat_ + w.wo[g.copy], d, out + g.begin * d, d, 0.0f);
}

void Model::attention_backward(int l, const float* in, const float* dout, float* din, bool accumulate) {
  LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const int64_t d = cfg_.dim, H = cfg_.n_heads, hd = cfg_.head_dim(), half = hd / 2, T = rt_.T;
  const auto& groups = rt_.groups[static_cast<int>(Component::Attention)];
  float* dcat = ws_.dB == dout ? ws_.dA : ws_.dB;  // a buffer that is not dout
  if (dcat == din) dcat = ws_.xn == in ? ws_.tmp : ws_.xn;
  for (const RowGroup& g : groups) {
    const int64_t n = g.end - g.begin;
    mm_.nn(n, d, d, dout + g.begin * d, d, wmat_ + w.wo[g.copy], d, dcat + g.begin * d, d, 0.0f);
    mm_.tn(d, d, n, dout + g.begin * d, d, a.cat + g.begin * d, d, grads_ + w.wo[g.copy], d, 1.0f);
  }
#pragma omp parallel for schedule(static)
  for (int64_t s = 0; s < rt_.N; ++s) {
    const int64_t b = rt_.perm[s] / T, t = rt_.perm[s] % T;
    for (int64_t h = 0; h < H; ++h)
      std::memcpy(ws_.dO + ((b * H + h) * T + t) * hd, dcat + s * d + h * hd, sizeof(float) * hd);
  }
  const cpu::KeyRanges kr{rt_.row_len.data(), rt_.row_len.data(), rt_.kv_lo.data(), rt_.kv_hi.data()};
  cpu::attention_backward({rt_.B, H, T, T, hd}, a.Q, a.K, a.V, a.O, a.lse, ws_.dO, kr, ws_.dQ, ws_.dK, ws_.dV);
  // From heads back to qkv rows: undo RoPE, then QK-norm backward.
  for (const RowGroup& g : groups) {
    const float* qw = cfg_.qk_norm ? params_ + w.q_norm[g.copy] : nullptr;
    const float* kw = cfg_.qk_norm ? params_ + w.k_norm[g.copy] : nullptr;
    const int64_t n = g.end - g.begin, per = (n + cpu::kReduceChunks - 1) / cpu::kReduceChunks;
    float* part = ws_.reduce;  // [chunks][2 * hd]: q-norm and k-norm weight gradients
    if (qw) std::memset(part, 0, sizeof(float) * cpu::kReduceChunks * 2 * hd);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < cpu::kReduceChunks; ++c) {
      float* pq = part + c * 2 * hd;
      float* pk = pq + hd;
      const int64_t s1 = std::min(g.end, g.begin + (c + 1) * per);
      for (int64_t s = g.begin + c * per; s < s1; ++s) {
        const int64_t b = rt_.perm[s] / T, t = rt_.perm[s] % T;
        const float* cs = ws_.rope_cos + rt_.pos[s] * half;
        const float* sn = ws_.rope_sin + rt_.pos[s] * half;
        const float* raw = a.qkv + s * 3 * d;
        float* drow = ws_.dqkv + s * 3 * d;
        for (int64_t h = 0; h < H; ++h) {
          const int64_t src = ((b * H + h) * T + t) * hd;
          float* dq = drow + h * hd;
          float* dk = drow + d + h * hd;
          std::memcpy(dq, ws_.dQ + src, sizeof(float) * hd);
          std::memcpy(dk, ws_.dK + src, sizeof(float) * hd);
          std::memcpy(drow + 2 * d + h * hd, ws_.dV + src, sizeof(float) * hd);
          rope_backward(dq, cs, sn, half);
          rope_backward(dk, cs, sn, half);
          if (!qw) continue;
          // y = x * r * w:  dx = r (dy ⊙ w) - x r³ mean(dy ⊙ w ⊙ x);  dw += dy ⊙ x r
          for (int which = 0; which < 2; ++which) {
            float* dy = which ? dk : dq;
            const float* x = raw + (which ? d : 0) + h * hd;
            const float* wt = which ? kw : qw;
            float* pw = which ? pk : pq;
            const float r = a.qk_rstd[s * 2 * H + (which ? H : 0) + h];
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
      float* gq = grads_ + w.q_norm[g.copy];
      float* gk = grads_ + w.k_norm[g.copy];
      for (int64_t c = 0; c < cpu::kReduceChunks; ++c)
        for (int64_t i = 0; i < hd; ++i) {
          gq[i] += part[c * 2 * hd + i];
          gk[i] += part[c * 2 * hd + hd + i];
        }
    }
  }
  for (const RowGroup& g : groups) {
    const int64_t n = g.end - g.begin;
    const float* dqkv = ws_.dqkv + g.begin * 3 * d;
    mm_.nn(n, d, 3 * d, dqkv, 3 * d, wmat_ + w.wqkv[g.copy], d, din + g.begin * d, d, accumulate ? 1.0f : 0.0f);
    mm_.tn(3 * d, d, n, dqkv, 3 * d, in + g.begin * d, d, grads_ + w.wqkv[g.copy], d, 1.0f);
  }
}

}  // namespace mot
