// The CUDA backend's memory, linear layers (cuBLAS) and factory. See cuda_backend.hpp.
#include "mot/backend/cuda/cuda_backend.hpp"
#include "mot/backend/cuda/cuda_impl.hpp"

#include <cstdio>

namespace mot::cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("cuda: ", what, ": ", cudaGetErrorString(e));
}

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cublas: ", what, ": ", cublasGetStatusString(s));
}

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();  // clear the sticky error of a failed probe
    return false;
  }
  return true;
}

std::string device_summary() {
  std::string why;
  if (!device_available(&why)) return "no GPU (" + why + ")";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "a GPU whose properties cannot be read";
  int driver = 0;
  cudaDriverGetVersion(&driver);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, %.1f GiB, sm_%d%d, %d SMs, driver %d.%d", p.name,
                static_cast<double>(p.totalGlobalMem) / (1 << 30), p.major, p.minor, p.multiProcessorCount,
                driver / 1000, (driver % 1000) / 10);
  return buf;
}

std::unique_ptr<Backend> make_cuda_backend(Precision precision) {
  std::string why;
  if (!device_available(&why)) fail("--device cuda: no usable GPU here (", why, ")");
  return std::make_unique<CudaBackend>(precision);
}

CudaBackend::CudaBackend(Precision p) : Backend(p) {
  check(cudaSetDevice(0), "cudaSetDevice");
  check(cublasCreate(&blas_), "cublasCreate");
  // The default math mode keeps fp32 GEMMs in fp32 (no TF32): the parity tests hold
  // the CPU's numbers to 1e-5; bf16 GEMMs take bf16 operands and fp32 sums either way.
  check(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
}

CudaBackend::~CudaBackend() {
  if (blas_) cublasDestroy(blas_);
  if (packed_) cudaFree(packed_);
  if (extra_) cudaFree(extra_);
}

void CudaBackend::map_arena(size_t bytes) {
  const size_t rounded = (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20) + (2u << 20);
  // Managed memory must fit in what the card has free: oversubscribing it can hang the
  // GPU (device README), so refuse with the numbers instead.
  size_t free_bytes = 0, total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  if (rounded > free_bytes / 10 * 9)
    fail("the model needs ", rounded >> 20, " MiB of GPU memory and the GPU has ", free_bytes >> 20, " MiB free (of ",
         total_bytes >> 20, "); lower train.batch_size, train.seq_len or the model size");
  void* p = nullptr;
  const cudaError_t e = cudaMallocManaged(&p, rounded);
  if (e != cudaSuccess)
    fail("cannot allocate ", rounded >> 20, " MiB of GPU memory for the model arena: ", cudaGetErrorString(e));
  check(cudaMemset(p, 0, rounded), "cudaMemset(arena)");
  check(cudaDeviceSynchronize(), "arena zeroing");
  arena_.adopt(p, rounded, [](void* base, size_t) { cudaFree(base); });
}

void CudaBackend::bind_scratch(const BackendScratch& s) {
  scratch_ = s;
  if (precision_ == Precision::bf16 && s.rounded_weights_begin) {
    const size_t n = static_cast<size_t>(s.rounded_weights_end - s.rounded_weights_begin);
    check(cudaMalloc(&packed_, n * sizeof(__nv_bfloat16)), "cudaMalloc(bf16 weights)");
  }
}

void* CudaBackend::scratch(size_t bytes) {
  if (bytes > extra_bytes_) {
    synchronize();  // the old scratch may still be in use by queued kernels
    if (extra_) cudaFree(extra_);
    extra_ = nullptr;
    check(cudaMalloc(&extra_, bytes), "cudaMalloc(scratch)");
    extra_bytes_ = bytes;
  }
  return extra_;
}

void CudaBackend::upload(const void* host, void* dst, size_t bytes) {
  if (bytes) check(cudaMemcpy(dst, host, bytes, cudaMemcpyDefault), "upload");
}

void CudaBackend::download(const void* src, void* host, size_t bytes) {
  if (bytes) check(cudaMemcpy(host, src, bytes, cudaMemcpyDefault), "download");
}

void CudaBackend::synchronize() { check(cudaDeviceSynchronize(), "a kernel"); }

void CudaBackend::zero(float* x, int64_t n) {
  if (n > 0) check(cudaMemsetAsync(x, 0, sizeof(float) * static_cast<size_t>(n)), "zero");
}

void CudaBackend::set_batch_invariant(bool on) {
  if (on) fail("--device cuda: generation is not supported on the GPU yet (run mot generate on the CPU)");
  batch_invariant_ = false;
}

// ---- linear layers. Row-major M[r, c] (stride ld) is column-major Mᵀ with the same
// ld, so each row-major product is computed as its transpose:
//   y = x·Wᵀ     ->  yᵀ  = W·xᵀ      gemm(T, N, out, N, in)
//   dx = dy·W    ->  dxᵀ = Wᵀ·dyᵀ    gemm(N, N, in, N, out)
//   dW += dyᵀ·x  ->  dWᵀ = xᵀ·dy     gemm(N, T, in, out, N)

namespace {

__global__ void round_bf16_kernel(const float* src, int64_t rows, int64_t cols, int64_t ld, __nv_bfloat16* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  dst[i] = __float2bfloat16_rn(src[r * ld + c]);
}

__global__ void round_weights_kernel(const float* p, float* rounded, __nv_bfloat16* packed, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const __nv_bfloat16 b = __float2bfloat16_rn(p[i]);
  rounded[i] = __bfloat162float(b);
  if (packed) packed[i] = b;
}

constexpr float kZero = 0.0f, kOne = 1.0f;

}  // namespace

const __nv_bfloat16* CudaBackend::to_bf16(ConstMat src, __nv_bfloat16* dst) {
  const int64_t n = src.rows * src.cols;
  if (n > 2 * scratch_.bf16_floats) fail("internal: bf16 operand exceeds the scratch");
  round_bf16_kernel<<<blocks_for(n, 256), 256>>>(src.data, src.rows, src.cols, src.ld, dst);
  launched("round_bf16");
  return dst;
}

const __nv_bfloat16* CudaBackend::bf16_weights(const float* W) const {
  if (!packed_ || W < scratch_.rounded_weights_begin || W >= scratch_.rounded_weights_end)
    fail("internal: a bf16 GEMM on weights outside the rounded copy");
  return packed_ + (W - scratch_.rounded_weights_begin);
}

void CudaBackend::round_weights(const float* params, float* rounded, int64_t n) {
  if (n <= 0) return;
  __nv_bfloat16* packed = rounded == scratch_.rounded_weights_begin ? packed_ : nullptr;
  round_weights_kernel<<<blocks_for(n, 256), 256>>>(params, rounded, packed, n);
  launched("round_weights");
}

void CudaBackend::linear_forward(ConstMat x, const float* W, Mat y) {
  if (x.rows == 0) return;
  const int m = static_cast<int>(y.cols), n = static_cast<int>(x.rows), k = static_cast<int>(x.cols);
  if (precision_ == Precision::fp32) {
    check(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &kOne, W, k, x.data, static_cast<int>(x.ld), &kZero,
                      y.data, static_cast<int>(y.ld)),
          "linear_forward");
    return;
  }
  const __nv_bfloat16* xb = to_bf16(x, reinterpret_cast<__nv_bfloat16*>(scratch_.bf16_a));
  check(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &kOne, bf16_weights(W), CUDA_R_16BF, k, xb,
                     CUDA_R_16BF, k, &kZero, y.data, CUDA_R_32F, static_cast<int>(y.ld), CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        "linear_forward (bf16)");
}

void CudaBackend::linear_backward_input(ConstMat dy, const float* W, Mat dx, bool accumulate) {
  if (dy.rows == 0) return;
  const int m = static_cast<int>(dx.cols), n = static_cast<int>(dy.rows), k = static_cast<int>(dy.cols);
  const float* beta = accumulate ? &kOne : &kZero;
  if (precision_ == Precision::fp32) {
    check(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &kOne, W, m, dy.data, static_cast<int>(dy.ld), beta,
                      dx.data, static_cast<int>(dx.ld)),
          "linear_backward_input");
    return;
  }
  const __nv_bfloat16* db = to_bf16(dy, reinterpret_cast<__nv_bfloat16*>(scratch_.bf16_a));
  check(cublasGemmEx(blas_, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &kOne, bf16_weights(W), CUDA_R_16BF, m, db,
                     CUDA_R_16BF, k, beta, dx.data, CUDA_R_32F, static_cast<int>(dx.ld), CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        "linear_backward_input (bf16)");
}

void CudaBackend::linear_backward_weight(ConstMat dy, ConstMat x, float* dW) {
  if (dy.rows == 0) return;
  const int m = static_cast<int>(x.cols), n = static_cast<int>(dy.cols), k = static_cast<int>(dy.rows);
  if (precision_ == Precision::fp32) {
    check(cublasSgemm(blas_, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &kOne, x.data, static_cast<int>(x.ld), dy.data,
                      static_cast<int>(dy.ld), &kOne, dW, m),
          "linear_backward_weight");
    return;
  }
  const __nv_bfloat16* xb = to_bf16(x, reinterpret_cast<__nv_bfloat16*>(scratch_.bf16_a));
  const __nv_bfloat16* db = to_bf16(dy, reinterpret_cast<__nv_bfloat16*>(scratch_.bf16_b));
  check(cublasGemmEx(blas_, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &kOne, xb, CUDA_R_16BF, m, db, CUDA_R_16BF, n, &kOne,
                     dW, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "linear_backward_weight (bf16)");
}

}  // namespace mot::cuda
