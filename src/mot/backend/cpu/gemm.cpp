#include "mot/backend/cpu/gemm.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "mot/core/profile.hpp"

namespace mot::cpu {

namespace {

// OpenBLAS's own threading (OpenMP build) mallocs a job array (~512 KiB) on every
// threaded call, and it splits work its own way. We split the output across our
// OpenMP threads instead and let each thread run a single-threaded OpenBLAS GEMM on
// its slice (OpenBLAS runs single-threaded inside a parallel region). Problems below
// OpenBLAS's own threading threshold are called directly: they run single-threaded
// and allocate nothing.
constexpr double kSplitThreshold = 65536.0 * 4.0;  // OpenBLAS: SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD

// Calls part(m0, m1, n0, n1) over a partition of the M x N output.
template <class Part>
void split(int64_t M, int64_t N, int64_t K, const Part& part) {
  const int nt = omp_get_max_threads();
  if (nt <= 1 || omp_in_parallel() || static_cast<double>(M) * N * K < kSplitThreshold) {
    part(0, M, 0, N);
    return;
  }
  const bool by_rows = M >= N;
  const int64_t D = by_rows ? M : N;
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t per = ((D + n - 1) / n + 15) / 16 * 16;  // 16: whole AVX-512 vectors of columns
    const int64_t b = std::min<int64_t>(D, t * per), e = std::min<int64_t>(D, b + per);
    if (b < e) {
      if (by_rows) part(b, e, 0, N);
      else part(0, M, b, e);
    }
  }
}

// With K == 0 a GEMM is C = beta·C.
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
  prof::Scope scope(prof::GemmForward, 2.0 * static_cast<double>(M) * N * K);
  if (K == 0) return scale_only(M, N, C, ldc, beta);
  split(M, N, K, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m1 - m0, n1 - n0, K, 1.0f, A + m0 * lda, lda,
                B + n0 * ldb, ldb, beta, C + m0 * ldc + n0, ldc);
  });
}

void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  prof::Scope scope(prof::GemmInputGrad, 2.0 * static_cast<double>(M) * N * K);
  if (K == 0) return scale_only(M, N, C, ldc, beta);
  split(M, N, K, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1 - m0, n1 - n0, K, 1.0f, A + m0 * lda, lda, B + n0,
                ldb, beta, C + m0 * ldc + n0, ldc);
  });
}

void gemm_tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, float beta) {
  if (M == 0 || N == 0) return;
  prof::Scope scope(prof::GemmWeightGrad, 2.0 * static_cast<double>(M) * N * K);
  if (K == 0) return scale_only(M, N, C, ldc, beta);
  split(M, N, K, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m1 - m0, n1 - n0, K, 1.0f, A + m0, lda, B + n0, ldb, beta,
                C + m0 * ldc + n0, ldc);
  });
}

}  // namespace mot::cpu
