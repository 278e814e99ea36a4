// Rows <-> heads on the GPU: sorted rows of qkv ([N, 3d]) to Q, K, V ([B, H, T, hd]) at
// their slots through the per-head QK-norm and RoPE, and back (backend/cpu/heads.cpp
// is the reference). One block per (row, head), one thread per rotary pair (i, i + hd/2).
#include "mot/backend/cuda/cuda_impl.hpp"

namespace mot::cuda {

namespace {

// Sum over the block's threads (blockDim.x <= 128, any count), fixed order.
__device__ float pair_sum(float v, float* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  float s = 0.0f;
  for (unsigned i = 0; i < blockDim.x; ++i) s += sh[i];
  __syncthreads();
  return s;
}

struct Lay {
  int64_t Tq, Tk, H, hd;
  const int32_t* q_slot, *kv_slot, *pos;
  const float* cs, *sn;
};

Lay lay_of(const HeadLayout& l) { return {l.Tq, l.Tk, l.H, l.hd, l.q_slot, l.kv_slot, l.pos, l.rope_cos, l.rope_sin}; }

__global__ void heads_forward_k(Lay L, int64_t s0, const float* qkv, int64_t ld, const float* qw, const float* kw,
                                float eps, float* rstd, float* Q, float* K, float* V) {
  __shared__ float sh[128];
  const int64_t s = s0 + blockIdx.x, h = blockIdx.y, half = L.hd / 2, i = threadIdx.x, d = L.H * L.hd;
  const int64_t b = L.q_slot[s] / L.Tq, t = L.q_slot[s] % L.Tq;
  const int64_t kb = L.kv_slot[s] / L.Tk, key = L.kv_slot[s] % L.Tk;
  const int64_t q_at = ((b * L.H + h) * L.Tq + t) * L.hd, kv_at = ((kb * L.H + h) * L.Tk + key) * L.hd;
  const float* row = qkv + s * ld;
  float q0 = row[h * L.hd + i], q1 = row[h * L.hd + i + half];
  float k0 = row[d + h * L.hd + i], k1 = row[d + h * L.hd + i + half];
  V[kv_at + i] = row[2 * d + h * L.hd + i];
  V[kv_at + i + half] = row[2 * d + h * L.hd + i + half];
  if (qw) {
    const float sq = pair_sum(q0 * q0 + q1 * q1, sh), sk = pair_sum(k0 * k0 + k1 * k1, sh);
    const float rq = 1.0f / sqrtf(sq / L.hd + eps), rk = 1.0f / sqrtf(sk / L.hd + eps);
    if (i == 0) {
      rstd[s * 2 * L.H + h] = rq;
      rstd[s * 2 * L.H + L.H + h] = rk;
    }
    q0 *= rq * qw[i];
    q1 *= rq * qw[i + half];
    k0 *= rk * kw[i];
    k1 *= rk * kw[i + half];
  }
  const float c = L.cs[L.pos[s] * half + i], sn = L.sn[L.pos[s] * half + i];
  Q[q_at + i] = q0 * c - q1 * sn;
  Q[q_at + i + half] = q1 * c + q0 * sn;
  K[kv_at + i] = k0 * c - k1 * sn;
  K[kv_at + i + half] = k1 * c + k0 * sn;
}

// dq, dk (after undoing RoPE) and dv into dqkv, then the QK-norm backward of dq, dk.
__global__ void heads_backward_k(Lay L, int64_t s0, const float* qkv, int64_t ld, const float* qw, const float* kw,
                                 const float* rstd, const float* dQ, const float* dK, const float* dV, float* dqkv,
                                 int64_t ldd) {
  __shared__ float sh[128];
  const int64_t s = s0 + blockIdx.x, h = blockIdx.y, half = L.hd / 2, i = threadIdx.x, d = L.H * L.hd;
  const int64_t b = L.q_slot[s] / L.Tq, t = L.q_slot[s] % L.Tq;
  const int64_t kb = L.kv_slot[s] / L.Tk, key = L.kv_slot[s] % L.Tk;
  const int64_t q_at = ((b * L.H + h) * L.Tq + t) * L.hd, kv_at = ((kb * L.H + h) * L.Tk + key) * L.hd;
  const float c = L.cs[L.pos[s] * half + i], sn = L.sn[L.pos[s] * half + i];
  float* drow = dqkv + s * ldd;
  drow[2 * d + h * L.hd + i] = dV[kv_at + i];
  drow[2 * d + h * L.hd + i + half] = dV[kv_at + i + half];
  for (int which = 0; which < 2; ++which) {
    const float* src = which ? dK + kv_at : dQ + q_at;
    const float a = src[i], bb = src[i + half];
    float g0 = a * c + bb * sn, g1 = bb * c - a * sn;  // RoPE undone
    if (qw) {
      const float* x = qkv + s * ld + (which ? d : 0) + h * L.hd;
      const float* wt = which ? kw : qw;
      const float r = rstd[s * 2 * L.H + (which ? L.H : 0) + h];
      const float dot = pair_sum(g0 * wt[i] * x[i] + g1 * wt[i + half] * x[i + half], sh);
      const float kk = r * r * r * dot / L.hd;
      g0 = r * g0 * wt[i] - kk * x[i];
      g1 = r * g1 * wt[i + half] - kk * x[i + half];
    }
    float* out = drow + (which ? d : 0) + h * L.hd;
    out[i] = g0;
    out[i + half] = g1;
  }
}

// QK-norm weight gradients: dw[i] += Σ_{s, h} g_pre[s, h, i] x[s, h, i] r[s, h], with
// g_pre the gradient after undoing RoPE (recomputed from dQ / dK). Partial sums over
// kReduceChunks row chunks (blockIdx.y), one thread per (q|k, i) (blockIdx.x: q or k).
__global__ void qk_norm_dw_k(Lay L, int64_t s0, int64_t s1, const float* qkv, int64_t ld, const float* rstd,
                             const float* dQ, const float* dK, int64_t per, float* part) {
  const int64_t which = blockIdx.x, i = threadIdx.x, half = L.hd / 2, d = L.H * L.hd;
  const int64_t c = blockIdx.y, r0 = s0 + c * per, r1 = min(s1, r0 + per);
  const int64_t pi = i < half ? i : i - half;  // its rotary pair
  float acc = 0.0f;
  for (int64_t s = r0; s < r1; ++s) {
    const int64_t b = L.q_slot[s] / L.Tq, t = L.q_slot[s] % L.Tq;
    const int64_t kb = L.kv_slot[s] / L.Tk, key = L.kv_slot[s] % L.Tk;
    const float cs = L.cs[L.pos[s] * half + pi], sn = L.sn[L.pos[s] * half + pi];
    for (int64_t h = 0; h < L.H; ++h) {
      const float* src = which ? dK + ((kb * L.H + h) * L.Tk + key) * L.hd : dQ + ((b * L.H + h) * L.Tq + t) * L.hd;
      const float a = src[pi], bb = src[pi + half];
      const float g = i < half ? a * cs + bb * sn : bb * cs - a * sn;
      const float x = qkv[s * ld + (which ? d : 0) + h * L.hd + i];
      acc += g * x * rstd[s * 2 * L.H + (which ? L.H : 0) + h];
    }
  }
  part[c * 2 * L.hd + which * L.hd + i] = acc;
}

__global__ void qk_norm_dw_sum_k(const float* part, int64_t hd, float* dq_w, float* dk_w) {
  const int64_t which = blockIdx.x, i = threadIdx.x;
  float* dst = which ? dk_w : dq_w;
  float s = dst[i];
  for (int64_t c = 0; c < kReduceChunks; ++c) s += part[c * 2 * hd + which * hd + i];
  dst[i] = s;
}

__global__ void heads_to_rows_k(Lay L, const float* O, float* cat, int64_t ld) {
  const int64_t s = blockIdx.x, b = L.q_slot[s] / L.Tq, t = L.q_slot[s] % L.Tq, d = L.H * L.hd;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const int64_t h = j / L.hd, e = j % L.hd;
    cat[s * ld + j] = O[((b * L.H + h) * L.Tq + t) * L.hd + e];
  }
}

__global__ void rows_to_heads_k(Lay L, const float* dcat, int64_t ld, float* dO) {
  const int64_t s = blockIdx.x, b = L.q_slot[s] / L.Tq, t = L.q_slot[s] % L.Tq, d = L.H * L.hd;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const int64_t h = j / L.hd, e = j % L.hd;
    dO[((b * L.H + h) * L.Tq + t) * L.hd + e] = dcat[s * ld + j];
  }
}

void check_head_dim(int64_t hd) {
  if (hd % 2 != 0 || hd > 256) fail("--device cuda: head_dim ", hd, " is not supported (even, at most 256)");
}

}  // namespace

void CudaBackend::heads_forward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk,
                                float* Q, float* K, float* V) {
  if (s1 <= s0) return;
  check_head_dim(lay.hd);
  heads_forward_k<<<dim3(static_cast<unsigned>(s1 - s0), static_cast<unsigned>(lay.H)),
                    static_cast<unsigned>(lay.hd / 2)>>>(lay_of(lay), s0, qkv.data, qkv.ld, qk.q_w, qk.k_w, qk.eps,
                                                         qk.rstd, Q, K, V);
  launched("heads_forward");
}

void CudaBackend::heads_backward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk,
                                 const float* dQ, const float* dK, const float* dV, Mat dqkv, float* dq_w,
                                 float* dk_w) {
  if (s1 <= s0) return;
  check_head_dim(lay.hd);
  const Lay L = lay_of(lay);
  heads_backward_k<<<dim3(static_cast<unsigned>(s1 - s0), static_cast<unsigned>(lay.H)),
                     static_cast<unsigned>(lay.hd / 2)>>>(L, s0, qkv.data, qkv.ld, qk.q_w, qk.k_w, qk.rstd, dQ, dK,
                                                          dV, dqkv.data, dqkv.ld);
  launched("heads_backward");
  if (!qk.q_w) return;
  if (scratch_.reduce_floats < kReduceChunks * 2 * lay.hd) fail("internal: QK-norm reduce scratch too small");
  const int64_t per = (s1 - s0 + kReduceChunks - 1) / kReduceChunks;
  qk_norm_dw_k<<<dim3(2, kReduceChunks), static_cast<unsigned>(lay.hd)>>>(L, s0, s1, qkv.data, qkv.ld, qk.rstd, dQ,
                                                                         dK, per, scratch_.reduce);
  launched("heads_backward (QK-norm dw)");
  qk_norm_dw_sum_k<<<2, static_cast<unsigned>(lay.hd)>>>(scratch_.reduce, lay.hd, dq_w, dk_w);
  launched("heads_backward (QK-norm dw sum)");
}

void CudaBackend::heads_to_rows(const HeadLayout& lay, const float* O, Mat cat) {
  if (cat.rows == 0) return;
  heads_to_rows_k<<<static_cast<unsigned>(cat.rows), 256>>>(lay_of(lay), O, cat.data, cat.ld);
  launched("heads_to_rows");
}

void CudaBackend::rows_to_heads(const HeadLayout& lay, ConstMat dcat, float* dO) {
  if (dcat.rows == 0) return;
  rows_to_heads_k<<<static_cast<unsigned>(dcat.rows), 256>>>(lay_of(lay), dcat.data, dcat.ld, dO);
  launched("rows_to_heads");
}

}  // namespace mot::cuda
