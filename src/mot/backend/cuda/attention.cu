// Attention under key ranges on the GPU (backend/cpu/attention.hpp states the contract):
// query i of row b sees keys [lo, hi) of its row; O and lse for valid queries only;
// backward overwrites dQ, dK, dV (zero past q_len / k_len and for empty ranges).
//
// First version: one warp per query (forward, dQ) or per key (dK, dV), the head
// dimension spread over the lanes, keys walked in order with an online softmax.
// Exact and deterministic (no atomics: each warp owns its outputs; warp sums by xor
// butterfly give every lane the same bits), not fast: the tiled flash-attention kernel
// replaces it once it can be measured on a device (issue 16).
#include "mot/backend/cuda/cuda_impl.hpp"

#include <cmath>

namespace mot::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kPerLane = 8;  // head_dim <= 256
constexpr int kWarpsPerBlock = 4;

__device__ inline float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct Shape {
  int64_t B, H, Tq, Tk, hd;
  float scale;
};

__device__ inline float dot_lanes(const float* a, const float* row, int64_t hd, int lane) {
  float s = 0.0f;
  int c = 0;
  for (int64_t e = lane; e < hd; e += kWarp, ++c) s += a[c] * row[e];
  return warp_sum(s);
}

__device__ inline void load_lanes(float* dst, const float* row, int64_t hd, int lane) {
  int c = 0;
  for (int64_t e = lane; e < hd; e += kWarp, ++c) dst[c] = row[e];
  for (; c < kPerLane; ++c) dst[c] = 0.0f;
}

__device__ inline void store_lanes(float* row, const float* src, int64_t hd, int lane, float k) {
  int c = 0;
  for (int64_t e = lane; e < hd; e += kWarp, ++c) row[e] = src[c] * k;
}

__global__ void forward_k(Shape S, const float* Q, const float* K, const float* V, KeyRanges r, float* O,
                          float* lse) {
  const int64_t w = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= S.B * S.H * S.Tq) return;
  const int64_t i = w % S.Tq, bh = w / S.Tq, b = bh / S.H;
  if (i >= r.q_len[b]) return;
  const int64_t lo = r.lo[b * S.Tq + i], hi = r.hi[b * S.Tq + i];
  float q[kPerLane], o[kPerLane];
  load_lanes(q, Q + w * S.hd, S.hd, lane);
  for (int c = 0; c < kPerLane; ++c) o[c] = 0.0f;
  const float* Kb = K + bh * S.Tk * S.hd;
  const float* Vb = V + bh * S.Tk * S.hd;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = lo; j < hi; ++j) {
    const float s = dot_lanes(q, Kb + j * S.hd, S.hd, lane) * S.scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), p = expf(s - m_new);
    l = l * corr + p;
    int c = 0;
    for (int64_t e = lane; e < S.hd; e += kWarp, ++c) o[c] = o[c] * corr + p * Vb[j * S.hd + e];
    m = m_new;
  }
  if (hi <= lo) {
    store_lanes(O + w * S.hd, o, S.hd, lane, 0.0f);
    if (lane == 0) lse[w] = -INFINITY;
    return;
  }
  store_lanes(O + w * S.hd, o, S.hd, lane, 1.0f / l);
  if (lane == 0) lse[w] = m + logf(l);
}

// D_i = dO_i · O_i (0 for queries past q_len).
__global__ void delta_k(Shape S, const float* O, const float* dO, KeyRanges r, float* D) {
  const int64_t w = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= S.B * S.H * S.Tq) return;
  const int64_t i = w % S.Tq, b = w / S.Tq / S.H;
  float a[kPerLane];
  load_lanes(a, dO + w * S.hd, S.hd, lane);
  const float d = dot_lanes(a, O + w * S.hd, S.hd, lane);
  if (lane == 0) D[w] = i < r.q_len[b] ? d : 0.0f;
}

__global__ void dq_k(Shape S, const float* Q, const float* K, const float* V, const float* lse, const float* dO,
                     const float* D, KeyRanges r, float* dQ) {
  const int64_t w = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= S.B * S.H * S.Tq) return;
  const int64_t i = w % S.Tq, bh = w / S.Tq, b = bh / S.H;
  float dq[kPerLane];
  for (int c = 0; c < kPerLane; ++c) dq[c] = 0.0f;
  if (i < r.q_len[b]) {
    const int64_t lo = r.lo[b * S.Tq + i], hi = r.hi[b * S.Tq + i];
    float q[kPerLane], g[kPerLane];
    load_lanes(q, Q + w * S.hd, S.hd, lane);
    load_lanes(g, dO + w * S.hd, S.hd, lane);
    const float L = lse[w], Di = D[w];
    const float* Kb = K + bh * S.Tk * S.hd;
    const float* Vb = V + bh * S.Tk * S.hd;
    for (int64_t j = lo; j < hi; ++j) {
      const float p = expf(dot_lanes(q, Kb + j * S.hd, S.hd, lane) * S.scale - L);
      const float dp = dot_lanes(g, Vb + j * S.hd, S.hd, lane);
      const float ds = p * (dp - Di) * S.scale;
      int c = 0;
      for (int64_t e = lane; e < S.hd; e += kWarp, ++c) dq[c] += ds * Kb[j * S.hd + e];
    }
  }
  store_lanes(dQ + w * S.hd, dq, S.hd, lane, 1.0f);
}

// One warp per key j of (b, h): every query of the row that sees j, in order.
__global__ void dkv_k(Shape S, const float* Q, const float* K, const float* V, const float* lse, const float* dO,
                      const float* D, KeyRanges r, float* dK, float* dV) {
  const int64_t w = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= S.B * S.H * S.Tk) return;
  const int64_t j = w % S.Tk, bh = w / S.Tk, b = bh / S.H;
  float dk[kPerLane], dv[kPerLane];
  for (int c = 0; c < kPerLane; ++c) dk[c] = dv[c] = 0.0f;
  if (j < r.k_len[b]) {
    float k[kPerLane], v[kPerLane];
    load_lanes(k, K + w * S.hd, S.hd, lane);
    load_lanes(v, V + w * S.hd, S.hd, lane);
    const int64_t nq = r.q_len[b];
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t at = b * S.Tq + i;
      if (j < r.lo[at] || j >= r.hi[at]) continue;
      const int64_t qi = bh * S.Tq + i;
      const float* q = Q + qi * S.hd;
      const float* g = dO + qi * S.hd;
      const float p = expf(dot_lanes(k, q, S.hd, lane) * S.scale - lse[qi]);
      const float dp = dot_lanes(v, g, S.hd, lane);
      const float ds = p * (dp - D[qi]) * S.scale;
      int c = 0;
      for (int64_t e = lane; e < S.hd; e += kWarp, ++c) {
        dv[c] += p * g[e];
        dk[c] += ds * q[e];
      }
    }
  }
  store_lanes(dK + w * S.hd, dk, S.hd, lane, 1.0f);
  store_lanes(dV + w * S.hd, dv, S.hd, lane, 1.0f);
}

Shape shape_of(const AttnShape& s) {
  if (s.hd > kWarp * kPerLane) fail("--device cuda: head_dim ", s.hd, " is not supported (at most ", kWarp * kPerLane, ")");
  return {s.B, s.H, s.Tq, s.Tk, s.hd, static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.hd)))};
}

unsigned warp_blocks(int64_t warps) { return blocks_for(warps, kWarpsPerBlock); }

}  // namespace

void CudaBackend::attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V,
                                    const KeyRanges& mask, float* O, float* lse) {
  const Shape S = shape_of(s);
  const int64_t queries = s.B * s.H * s.Tq;
  if (queries == 0) return;
  forward_k<<<warp_blocks(queries), kWarpsPerBlock * kWarp>>>(S, Q, K, V, mask, O, lse);
  launched("attention_forward");
}

void CudaBackend::attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V,
                                     const float* O, const float* lse, const float* dO, const KeyRanges& mask,
                                     float* dQ, float* dK, float* dV) {
  const Shape S = shape_of(s);
  const int64_t queries = s.B * s.H * s.Tq, keys = s.B * s.H * s.Tk;
  if (queries == 0) return;
  auto* D = static_cast<float*>(scratch(sizeof(float) * static_cast<size_t>(queries)));
  delta_k<<<warp_blocks(queries), kWarpsPerBlock * kWarp>>>(S, O, dO, mask, D);
  launched("attention_backward (D)");
  dq_k<<<warp_blocks(queries), kWarpsPerBlock * kWarp>>>(S, Q, K, V, lse, dO, D, mask, dQ);
  launched("attention_backward (dQ)");
  dkv_k<<<warp_blocks(keys), kWarpsPerBlock * kWarp>>>(S, Q, K, V, lse, dO, D, mask, dK, dV);
  launched("attention_backward (dK, dV)");
}

}  // namespace mot::cuda
