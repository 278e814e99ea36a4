#include "mot/backend/cpu/matmul.hpp"

#include "mot/backend/cpu/bf16.hpp"
#include "mot/backend/cpu/gemm.hpp"
#include "mot/core/error.hpp"
#include "mot/core/profile.hpp"

namespace mot {

Precision parse_precision(const std::string& s, const std::string& where) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  fail(where, ": must be fp32 or bf16 (got '", s, "')");
}

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

}  // namespace mot

namespace mot::cpu {

void Matmul::set_bf16(const float* rounded_begin, const float* rounded_end, float* scratch_a, float* scratch_b,
                      int64_t scratch_floats) {
  precision_ = Precision::bf16;
  rounded_begin_ = rounded_begin;
  rounded_end_ = rounded_end;
  scratch_a_ = scratch_a;
  scratch_b_ = scratch_b;
  scratch_floats_ = scratch_floats;
}

const float* Matmul::rounded(const float* p, int64_t& ld, int64_t rows, int64_t cols, float* scratch) const {
  if (p >= rounded_begin_ && p < rounded_end_) return p;
  if (rows * cols > scratch_floats_)
    fail("internal: bf16 operand of ", rows, "x", cols, " exceeds the scratch of ", scratch_floats_, " floats");
  prof::Scope scope(prof::RoundBf16);
  round_bf16_rows(p, ld, rows, cols, scratch);
  ld = cols;
  return scratch;
}

void Matmul::nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, float beta) {
  if (precision_ == Precision::bf16 && M > 0 && N > 0 && K > 0) {
    A = rounded(A, lda, M, K, scratch_a_);
    B = rounded(B, ldb, N, K, scratch_b_);
  }
  gemm_nt(M, N, K, A, lda, B, ldb, C, ldc, beta);
}

void Matmul::nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, float beta) {
  if (precision_ == Precision::bf16 && M > 0 && N > 0 && K > 0) {
    A = rounded(A, lda, M, K, scratch_a_);
    B = rounded(B, ldb, K, N, scratch_b_);
  }
  gemm_nn(M, N, K, A, lda, B, ldb, C, ldc, beta);
}

void Matmul::tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, float beta) {
  if (precision_ == Precision::bf16 && M > 0 && N > 0 && K > 0) {
    A = rounded(A, lda, K, M, scratch_a_);
    B = rounded(B, ldb, K, N, scratch_b_);
  }
  gemm_tn(M, N, K, A, lda, B, ldb, C, ldc, beta);
}

}  // namespace mot::cpu
