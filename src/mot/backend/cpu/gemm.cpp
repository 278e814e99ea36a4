#include "mot/backend/cpu/gemm.hpp"

#include <cblas.h>

#include <cstring>

namespace mot::cpu {

namespace {
// With K == 0 a GEMM is C = beta·C; OpenBLAS handles it, but be explicit.
void scale_only(int64_t M, int64_t N, float* C, int64_t ldc, float beta) {
  for (int64_t i = 0; i < M; ++i) {
    if (beta == 0.0f) std::memset(C + i * ldc, 0, sizeof(float) * N);
    else
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] *= beta;
  }
}
}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, C, ldc, beta);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, C, ldc, beta);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void gemm_tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, C, ldc, beta);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace mot::cpu
