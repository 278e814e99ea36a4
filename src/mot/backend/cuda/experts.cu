// Mixture-of-experts kernels on the GPU (backend/cpu/experts.cpp is the reference):
// expert choice, gathering picks, combining outputs and their backward. Experts are
// added in a fixed order and every output row has one owner: deterministic.
#include "mot/backend/cuda/cuda_impl.hpp"

namespace mot::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void gather_rows_k(const float* src, int64_t lds, const int32_t* rows, float* dst, int64_t ldd,
                              int64_t d) {
  const int64_t j = blockIdx.x;
  const float* s = src + static_cast<int64_t>(rows[j]) * lds;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dst[j * ldd + i] = s[i];
}

// A NaN score ranks last, like the CPU's.
__device__ inline float score_of(float v) { return isnan(v) ? -INFINITY : v; }

// One block per (pool, expert): each member's rank under the total order (score
// descending, then position) is the number of members before it; the k best are
// picked in rank order, exactly the CPU's partial sort.
__global__ void expert_choice_k(ExpertChoice c, const float* prob, int64_t ldp, int32_t* pick, int32_t* slot) {
  const int64_t p = c.pool0 + blockIdx.x, e = blockIdx.y, E = c.experts;
  const ExpertPool pool = c.pools[p];
  const int64_t n = pool.size, k = n / E;
  const int32_t* mem = c.members + pool.begin;
  const int64_t first = e * c.k_total + pool.pick0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float si = score_of(prob[static_cast<int64_t>(mem[i]) * ldp + e]);
    int64_t rank = 0;
    for (int64_t j = 0; j < n && rank < k; ++j) {
      const float sj = score_of(prob[static_cast<int64_t>(mem[j]) * ldp + e]);
      rank += sj > si || (sj == si && j < i);
    }
    const int64_t s = mem[i];
    if (rank < k) {
      pick[first + rank] = static_cast<int32_t>(s);
      slot[s * E + e] = static_cast<int32_t>(first + rank);
    } else {
      slot[s * E + e] = -1;
    }
  }
}

__global__ void expert_combine_k(int64_t s0, const float* prob, int64_t ldp, int64_t E, const int32_t* slot,
                                 const float* y, int64_t ldy, float* out, int64_t ldo, int64_t d) {
  const int64_t s = s0 + blockIdx.x;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float o = 0.0f;
    for (int64_t e = 0; e < E; ++e) {
      const int32_t r = slot[s * E + e];
      if (r >= 0) o += prob[s * ldp + e] * y[static_cast<int64_t>(r) * ldy + i];
    }
    out[s * ldo + i] = o;
  }
}

__device__ float block_sum(float v, float* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned st = blockDim.x / 2; st > 0; st >>= 1) {
    if (threadIdx.x < st) sh[threadIdx.x] += sh[threadIdx.x + st];
    __syncthreads();
  }
  const float r = sh[0];
  __syncthreads();
  return r;
}

// One block per row s, experts in order: dprob = g·dg at the pick, then dg, dy *= p.
__global__ void expert_combine_backward_k(int64_t s0, const float* prob, int64_t ldp, int64_t E, const int32_t* slot,
                                          const float* g, int64_t ldg, float* dg, int64_t lddg, int64_t F, float* dy,
                                          int64_t lddy, int64_t d, float* dprob, int64_t lddp) {
  __shared__ float sh[kThreads];
  const int64_t s = s0 + blockIdx.x;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r = slot[s * E + e];
    if (r < 0) {
      if (threadIdx.x == 0) dprob[(s - s0) * lddp + e] = 0.0f;
      continue;
    }
    const float p = prob[s * ldp + e];
    float dot = 0.0f;
    for (int64_t i = threadIdx.x; i < F; i += blockDim.x) dot += g[r * ldg + i] * dg[r * lddg + i];
    dot = block_sum(dot, sh);
    if (threadIdx.x == 0) dprob[(s - s0) * lddp + e] = dot;
    for (int64_t i = threadIdx.x; i < F; i += blockDim.x) dg[r * lddg + i] *= p;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dy[r * lddy + i] *= p;
  }
}

__global__ void expert_scatter_add_k(int64_t s0, const int32_t* slot, int64_t E, const float* dx, int64_t ldx,
                                     float* din, int64_t ldi, int64_t d) {
  const int64_t s = s0 + blockIdx.x;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float o = din[s * ldi + i];
    for (int64_t e = 0; e < E; ++e) {
      const int32_t r = slot[s * E + e];
      if (r >= 0) o += dx[static_cast<int64_t>(r) * ldx + i];
    }
    din[s * ldi + i] = o;
  }
}

__global__ void zero_rows_k(float* out, int64_t ld, int64_t s0, int64_t d) {
  const int64_t s = s0 + blockIdx.x;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[s * ld + i] = 0.0f;
}

__global__ void expert_accumulate_k(const float* prob, int64_t ldp, int64_t e, const int32_t* pick, const float* y,
                                    int64_t ldy, float* out, int64_t ldo, int64_t d) {
  const int64_t j = blockIdx.x, s = pick[j];
  const float p = prob[s * ldp + e];
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[s * ldo + i] += p * y[j * ldy + i];
}

}  // namespace

void CudaBackend::gather_rows(ConstMat src, const int32_t* rows, Mat dst) {
  if (dst.rows == 0) return;
  gather_rows_k<<<static_cast<unsigned>(dst.rows), kThreads>>>(src.data, src.ld, rows, dst.data, dst.ld, dst.cols);
  launched("gather_rows");
}

void CudaBackend::expert_choice(const ExpertChoice& c, ConstMat prob, int32_t* pick, int32_t* slot) {
  if (c.pool1 <= c.pool0 || c.experts == 0) return;
  expert_choice_k<<<dim3(static_cast<unsigned>(c.pool1 - c.pool0), static_cast<unsigned>(c.experts)), kThreads>>>(
      c, prob.data, prob.ld, pick, slot);
  launched("expert_choice");
}

void CudaBackend::expert_combine(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat y, Mat out) {
  if (s1 <= s0) return;
  expert_combine_k<<<static_cast<unsigned>(s1 - s0), kThreads>>>(s0, prob.data, prob.ld, prob.cols, slot, y.data,
                                                                 y.ld, out.data, out.ld, out.cols);
  launched("expert_combine");
}

void CudaBackend::expert_combine_backward(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat g,
                                          Mat dg, Mat dy, Mat dprob) {
  if (s1 <= s0) return;
  expert_combine_backward_k<<<static_cast<unsigned>(s1 - s0), kThreads>>>(
      s0, prob.data, prob.ld, prob.cols, slot, g.data, g.ld, dg.data, dg.ld, g.cols, dy.data, dy.ld, dy.cols,
      dprob.data, dprob.ld);
  launched("expert_combine_backward");
}

void CudaBackend::expert_scatter_add(int64_t s0, int64_t s1, const int32_t* slot, int64_t experts, ConstMat dx,
                                     Mat din) {
  if (s1 <= s0) return;
  expert_scatter_add_k<<<static_cast<unsigned>(s1 - s0), kThreads>>>(s0, slot, experts, dx.data, dx.ld, din.data,
                                                                     din.ld, din.cols);
  launched("expert_scatter_add");
}

// Generation only (threshold routing), which this backend does not run yet; kept exact
// through the managed arena: the host reads the scores and writes the picks.
int64_t CudaBackend::expert_threshold_pick(int64_t s0, int64_t s1, ConstMat prob, int64_t e, float threshold,
                                           int32_t* pick) {
  synchronize();
  int64_t n = 0;
  for (int64_t s = s0; s < s1; ++s)
    if (prob.row(s)[e] >= threshold) pick[n++] = static_cast<int32_t>(s);
  return n;
}

void CudaBackend::expert_accumulate(int64_t s0, int64_t s1, ConstMat prob, int64_t e, const int32_t* pick, int64_t n,
                                    ConstMat y, Mat out, bool first) {
  if (first && s1 > s0) {
    zero_rows_k<<<static_cast<unsigned>(s1 - s0), kThreads>>>(out.data, out.ld, s0, out.cols);
    launched("expert_accumulate (zero)");
  }
  if (n == 0) return;
  expert_accumulate_k<<<static_cast<unsigned>(n), kThreads>>>(prob.data, prob.ld, e, pick, y.data, y.ld, out.data,
                                                              out.ld, out.cols);
  launched("expert_accumulate");
}

}  // namespace mot::cuda
