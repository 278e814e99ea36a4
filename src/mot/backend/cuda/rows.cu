// Row-wise kernels of the CUDA backend: embedding, RMSNorm, residual, SwiGLU, SiLU, the
// losses, row-segment sums, router softmax and the optimizer. The arithmetic follows the
// CPU's (backend/cpu/kernels.cpp, loss.cpp, diffusion.cpp); every reduction runs in a
// fixed order, so results are deterministic.
#include "mot/backend/cuda/cuda_impl.hpp"

#include <vector>

namespace mot::cuda {

namespace {

constexpr int kThreads = 256;

// Sum of v over the block, in a fixed tree order; every thread gets the result.
// blockDim.x is a power of two <= 1024; `sh` holds blockDim.x values.
template <class T>
__device__ T block_sum(T v, T* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const T r = sh[0];
  __syncthreads();
  return r;
}

__device__ float block_max(float v, float* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  const float r = sh[0];
  __syncthreads();
  return r;
}

__device__ inline float sigmoidf(float a) { return 1.0f / (1.0f + expf(-a)); }

__global__ void embed_forward_k(const int32_t* ids, const float* table, float* x, int64_t ld, int64_t d) {
  const int64_t s = blockIdx.x;
  const float* src = table + static_cast<int64_t>(ids[s]) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) x[s * ld + i] = src[i];
}

// One thread per column, rows in order: a repeated token's rows add in a fixed order.
__global__ void embed_backward_k(const int32_t* ids, const float* dx, int64_t ld, int64_t n, int64_t d,
                                 float* dtable) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= d) return;
  for (int64_t s = 0; s < n; ++s) dtable[static_cast<int64_t>(ids[s]) * d + i] += dx[s * ld + i];
}

__global__ void rmsnorm_forward_k(const float* x, int64_t ldx, const float* w, float eps, float* y, int64_t ldy,
                                  float* rstd, int64_t d) {
  __shared__ float sh[kThreads];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * ldx;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, sh);
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  if (threadIdx.x == 0) rstd[r] = rs;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) y[r * ldy + i] = xr[i] * rs * w[i];
}

__global__ void rmsnorm_apply_k(const float* x, int64_t ldx, const float* w, const float* rstd, float* y,
                                int64_t ldy, int64_t d) {
  const int64_t r = blockIdx.x;
  const float rs = rstd[r];
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) y[r * ldy + i] = x[r * ldx + i] * rs * w[i];
}

__global__ void rmsnorm_backward_dx_k(const float* x, int64_t ldx, const float* w, const float* rstd,
                                      const float* dy, int64_t lddy, float* dx, int64_t lddx, int64_t d,
                                      bool accumulate) {
  __shared__ float sh[kThreads];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * ldx;
  const float* dyr = dy + r * lddy;
  float* dxr = dx + r * lddx;
  const float rs = rstd[r];
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dot += dyr[i] * w[i] * xr[i];
  dot = block_sum(dot, sh);
  const float k = rs * rs * rs * dot / static_cast<float>(d);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float g = rs * dyr[i] * w[i] - k * xr[i];
    dxr[i] = accumulate ? dxr[i] + g : g;
  }
}

// dw partial sums: chunk c (blockIdx.y) of the rows, one thread per column.
__global__ void rmsnorm_backward_dw_k(const float* x, int64_t ldx, const float* rstd, const float* dy, int64_t lddy,
                                      int64_t n, int64_t d, int64_t per, float* part) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= d) return;
  const int64_t c = blockIdx.y, r0 = c * per, r1 = min(n, r0 + per);
  float s = 0.0f;
  for (int64_t r = r0; r < r1; ++r) s += dy[r * lddy + i] * x[r * ldx + i] * rstd[r];
  part[c * d + i] = s;
}

// dst[i] += Σ_c part[c * d + i], chunks in order.
__global__ void add_chunks_k(const float* part, int64_t chunks, int64_t d, float* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= d) return;
  float s = dst[i];
  for (int64_t c = 0; c < chunks; ++c) s += part[c * d + i];
  dst[i] = s;
}

__global__ void add_k(const float* a, int64_t lda, const float* b, int64_t ldb, float* y, int64_t ldy, int64_t rows,
                      int64_t cols) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  y[r * ldy + c] = a[r * lda + c] + b[r * ldb + c];
}

__global__ void swiglu_forward_k(const float* ac, int64_t ldac, float* g, int64_t ldg, int64_t n, int64_t F) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * F) return;
  const int64_t r = i / F, j = i % F;
  const float a = ac[r * ldac + j], c = ac[r * ldac + F + j];
  g[r * ldg + j] = a * sigmoidf(a) * c;
}

__global__ void swiglu_backward_k(const float* ac, int64_t ldac, const float* dg, int64_t lddg, float* dac,
                                  int64_t lddac, int64_t n, int64_t F) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * F) return;
  const int64_t r = i / F, j = i % F;
  const float a = ac[r * ldac + j], c = ac[r * ldac + F + j], g = dg[r * lddg + j];
  const float s = sigmoidf(a), silu = a * s;
  dac[r * lddac + F + j] = g * silu;
  dac[r * lddac + j] = g * c * s * (1.0f + a * (1.0f - s));
}

__global__ void silu_forward_k(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t rows, int64_t cols) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  const float v = x[r * ldx + c];
  y[r * ldy + c] = v * sigmoidf(v);
}

__global__ void silu_backward_k(const float* x, int64_t ldx, const float* dy, int64_t lddy, float* dx, int64_t lddx,
                                int64_t rows, int64_t cols) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  const float v = x[r * ldx + c], s = sigmoidf(v);
  dx[r * lddx + c] = dy[r * lddy + c] * s * (1.0f + v * (1.0f - s));
}

// One block per row: max, then Σ exp(z - max) (stored in place for the gradient).
__global__ void cross_entropy_k(float* logits, int64_t ld, int64_t V, const int32_t* target, float grad_scale,
                                bool backward, double* row_loss) {
  __shared__ float sh[kThreads];
  const int64_t r = blockIdx.x;
  float* z = logits + r * ld;
  const int32_t tgt = target[r];
  if (tgt < 0) {
    if (threadIdx.x == 0) row_loss[r] = 0.0;
    if (backward)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) z[j] = 0.0f;
    return;
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, z[j]);
  mx = block_max(mx, sh);
  const float zt = z[tgt];
  __syncthreads();  // every thread has read z[tgt] before it is overwritten
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float e = expf(z[j] - mx);
    if (backward) z[j] = e;
    sum += e;
  }
  sum = block_sum(sum, sh);
  if (threadIdx.x == 0) row_loss[r] = static_cast<double>(mx) + log(static_cast<double>(sum)) - zt;
  if (!backward) return;
  const float k = grad_scale / sum;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) z[j] = z[j] * k - (j == tgt ? grad_scale : 0.0f);
}

__global__ void squared_error_k(float* pred, int64_t ldp, const float* target, int64_t ldt, int64_t cols, float g,
                                bool backward, double* row_loss) {
  __shared__ double sh[kThreads];
  const int64_t r = blockIdx.x;
  float* p = pred + r * ldp;
  const float* t = target + r * ldt;
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const double e = static_cast<double>(p[j]) - static_cast<double>(t[j]);
    sum += e * e;
    if (backward) p[j] = g * (p[j] - t[j]);
  }
  sum = block_sum(sum, sh);
  if (threadIdx.x == 0) row_loss[r] = sum;
}

__global__ void sum_row_segments_k(const float* x, int64_t ldx, const int32_t* seg, float* y, int64_t ldy,
                                   int64_t cols) {
  const int64_t k = blockIdx.x;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float s = 0.0f;
    for (int64_t r = seg[k]; r < seg[k + 1]; ++r) s += x[r * ldx + j];
    y[k * ldy + j] = s;
  }
}

// One thread per row (E is small: the router's experts).
__global__ void softmax_rows_k(float* z, int64_t ld, int64_t n, int64_t E) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= n) return;
  float* row = z + r * ld;
  float mx = row[0];
  for (int64_t e = 1; e < E; ++e) mx = fmaxf(mx, row[e]);
  float sum = 0.0f;
  for (int64_t e = 0; e < E; ++e) sum += row[e] = expf(row[e] - mx);
  const float inv = 1.0f / sum;
  for (int64_t e = 0; e < E; ++e) row[e] *= inv;
}

__global__ void softmax_rows_backward_k(const float* p, int64_t ldp, float* dp, int64_t lddp, int64_t n, int64_t E) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= n) return;
  const float* pr = p + r * ldp;
  float* g = dp + r * lddp;
  float dot = 0.0f;
  for (int64_t e = 0; e < E; ++e) dot += pr[e] * g[e];
  for (int64_t e = 0; e < E; ++e) g[e] = pr[e] * (g[e] - dot);
}

// Fixed grid, fixed tree: the same partial sums for the same n on every run.
constexpr int kSumBlocks = 256;
__global__ void sum_squares_k(const float* x, int64_t n, double* part) {
  __shared__ double sh[kThreads];
  double s = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    s += static_cast<double>(x[i]) * x[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void scale_k(float* x, int64_t n, float s) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void adamw_k(float* p, const float* g, float* m, float* v, int64_t n, AdamWStep s, float step_size,
                        float inv_sqrt_bias2, float decay) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float pi = p[i] * decay;
  const float gi = g[i];
  const float mi = s.beta1 * m[i] + s.one_minus_beta1 * gi;
  const float vi = s.beta2 * v[i] + s.one_minus_beta2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float denom = sqrtf(vi) * inv_sqrt_bias2 + s.eps;
  p[i] = pi - step_size * mi / denom;
}

}  // namespace

void CudaBackend::embed_forward(const int32_t* ids, const float* table, Mat x) {
  if (x.rows == 0) return;
  embed_forward_k<<<static_cast<unsigned>(x.rows), kThreads>>>(ids, table, x.data, x.ld, x.cols);
  launched("embed_forward");
}

void CudaBackend::embed_backward(const int32_t* ids, ConstMat dx, float* dtable) {
  if (dx.rows == 0) return;
  embed_backward_k<<<blocks_for(dx.cols, 128), 128>>>(ids, dx.data, dx.ld, dx.rows, dx.cols, dtable);
  launched("embed_backward");
}

void CudaBackend::rmsnorm_forward(ConstMat x, const float* w, float eps, Mat y, float* rstd) {
  if (x.rows == 0) return;
  rmsnorm_forward_k<<<static_cast<unsigned>(x.rows), kThreads>>>(x.data, x.ld, w, eps, y.data, y.ld, rstd, x.cols);
  launched("rmsnorm_forward");
}

void CudaBackend::rmsnorm_apply(ConstMat x, const float* w, const float* rstd, Mat y) {
  if (x.rows == 0) return;
  rmsnorm_apply_k<<<static_cast<unsigned>(x.rows), kThreads>>>(x.data, x.ld, w, rstd, y.data, y.ld, x.cols);
  launched("rmsnorm_apply");
}

void CudaBackend::rmsnorm_backward(ConstMat x, const float* w, const float* rstd, ConstMat dy, Mat dx,
                                   bool accumulate, float* dw) {
  const int64_t n = x.rows, d = x.cols;
  if (n == 0) return;
  if (scratch_.reduce_floats < kReduceChunks * d) fail("internal: norm reduce scratch too small");
  const int64_t per = (n + kReduceChunks - 1) / kReduceChunks;
  rmsnorm_backward_dw_k<<<dim3(blocks_for(d, 128), kReduceChunks), 128>>>(x.data, x.ld, rstd, dy.data, dy.ld, n, d,
                                                                           per, scratch_.reduce);
  launched("rmsnorm_backward (dw)");
  add_chunks_k<<<blocks_for(d, 128), 128>>>(scratch_.reduce, kReduceChunks, d, dw);
  launched("rmsnorm_backward (dw sum)");
  // dx last, so that the weight gradient reads dy even where dx shares its memory.
  rmsnorm_backward_dx_k<<<static_cast<unsigned>(n), kThreads>>>(x.data, x.ld, w, rstd, dy.data, dy.ld, dx.data,
                                                                 dx.ld, d, accumulate);
  launched("rmsnorm_backward");
}

void CudaBackend::add(ConstMat a, ConstMat b, Mat y) {
  const int64_t n = y.rows * y.cols;
  if (n == 0) return;
  add_k<<<blocks_for(n, kThreads), kThreads>>>(a.data, a.ld, b.data, b.ld, y.data, y.ld, y.rows, y.cols);
  launched("add");
}

void CudaBackend::swiglu_forward(ConstMat ac, Mat g) {
  const int64_t n = g.rows * g.cols;
  if (n == 0) return;
  swiglu_forward_k<<<blocks_for(n, kThreads), kThreads>>>(ac.data, ac.ld, g.data, g.ld, g.rows, g.cols);
  launched("swiglu_forward");
}

void CudaBackend::swiglu_backward(ConstMat ac, ConstMat dg, Mat dac) {
  const int64_t n = dg.rows * dg.cols;
  if (n == 0) return;
  swiglu_backward_k<<<blocks_for(n, kThreads), kThreads>>>(ac.data, ac.ld, dg.data, dg.ld, dac.data, dac.ld, dg.rows,
                                                            dg.cols);
  launched("swiglu_backward");
}

void CudaBackend::silu_forward(ConstMat x, Mat y) {
  const int64_t n = x.rows * x.cols;
  if (n == 0) return;
  silu_forward_k<<<blocks_for(n, kThreads), kThreads>>>(x.data, x.ld, y.data, y.ld, x.rows, x.cols);
  launched("silu_forward");
}

void CudaBackend::silu_backward(ConstMat x, ConstMat dy, Mat dx) {
  const int64_t n = x.rows * x.cols;
  if (n == 0) return;
  silu_backward_k<<<blocks_for(n, kThreads), kThreads>>>(x.data, x.ld, dy.data, dy.ld, dx.data, dx.ld, x.rows,
                                                          x.cols);
  launched("silu_backward");
}

void CudaBackend::cross_entropy(Mat logits, const int32_t* target, float grad_scale, bool backward,
                                double* row_loss) {
  if (logits.rows == 0) return;
  cross_entropy_k<<<static_cast<unsigned>(logits.rows), kThreads>>>(logits.data, logits.ld, logits.cols, target,
                                                                     grad_scale, backward, row_loss);
  launched("cross_entropy");
}

void CudaBackend::squared_error(Mat pred, ConstMat target, float grad_scale, bool backward, double* row_loss) {
  if (pred.rows == 0) return;
  squared_error_k<<<static_cast<unsigned>(pred.rows), kThreads>>>(pred.data, pred.ld, target.data, target.ld,
                                                                   pred.cols, 2.0f * grad_scale, backward, row_loss);
  launched("squared_error");
}

void CudaBackend::sum_row_segments(ConstMat x, const int32_t* seg, Mat y) {
  if (y.rows == 0) return;
  sum_row_segments_k<<<static_cast<unsigned>(y.rows), kThreads>>>(x.data, x.ld, seg, y.data, y.ld, y.cols);
  launched("sum_row_segments");
}

void CudaBackend::softmax_rows(Mat z) {
  if (z.rows == 0) return;
  softmax_rows_k<<<blocks_for(z.rows, 128), 128>>>(z.data, z.ld, z.rows, z.cols);
  launched("softmax_rows");
}

void CudaBackend::softmax_rows_backward(ConstMat p, Mat dp) {
  if (dp.rows == 0) return;
  softmax_rows_backward_k<<<blocks_for(dp.rows, 128), 128>>>(p.data, p.ld, dp.data, dp.ld, dp.rows, dp.cols);
  launched("softmax_rows_backward");
}

double CudaBackend::sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  auto* part = static_cast<double*>(scratch(sizeof(double) * kSumBlocks));
  sum_squares_k<<<kSumBlocks, kThreads>>>(x, n, part);
  launched("sum_squares");
  std::vector<double> host(kSumBlocks);
  download(part, host.data(), sizeof(double) * kSumBlocks);
  double s = 0.0;
  for (double p : host) s += p;
  return s;
}

void CudaBackend::scale(float* x, int64_t n, float s) {
  if (n <= 0) return;
  scale_k<<<blocks_for(n, kThreads), kThreads>>>(x, n, s);
  launched("scale");
}

void CudaBackend::adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) {
  if (n <= 0) return;
  const float step_size = s.lr / s.bias1;
  const float inv_sqrt_bias2 = 1.0f / std::sqrt(s.bias2);
  const float decay = 1.0f - s.lr * s.weight_decay;
  adamw_k<<<blocks_for(n, kThreads), kThreads>>>(p, g, m, v, n, s, step_size, inv_sqrt_bias2, decay);
  launched("adamw");
}

}  // namespace mot::cuda
