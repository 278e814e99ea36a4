// fp32 GEMMs on OpenBLAS (the OpenMP build: one thread pool with the engine's loops).
// Row-major throughout. Weights are stored [out, in] (nn.Linear), so a projection is
// gemm_nt (Y = X · Wᵀ), its input gradient gemm_nn (dX = dY · W) and its weight
// gradient gemm_tn (dW += dYᵀ · X). Empty sizes are no-ops.
#pragma once
#include <cstdint>

namespace mot::cpu {

// C[M,N] = A[M,K] · B[N,K]ᵀ + beta · C
void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta);
// C[M,N] = A[M,K] · B[K,N] + beta · C
void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta);
// C[M,N] = A[K,M]ᵀ · B[K,N] + beta · C
void gemm_tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta);

}  // namespace mot::cpu
