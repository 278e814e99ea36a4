// The model's GEMMs at its compute precision.
//
// fp32: straight to gemm.hpp.
// bf16 (mixed precision): every operand is rounded to bf16 and the products are
// summed in fp32 into an fp32 output, i.e. the numerics of a bf16 x bf16 -> fp32 GEMM
// (oneDNN, cuBLAS) up to summation order. Weights are rounded once per forward by the
// model into a copy whose address range the Matmul is told (so they are not rounded
// again); activations and gradients are rounded here into scratch buffers carved from
// the model's arena. The products of two bf16 values are exact in fp32, so running
// the rounded operands through fp32 sgemm is exact emulation; on CPUs with native
// bf16 dot products a bf16 kernel would replace the sgemm call with the same results.
#pragma once
#include <cstdint>
#include "mot/backend/precision.hpp"

namespace mot::cpu {

using mot::Precision;  // older spellings, kept for callers outside model/
using mot::parse_precision;
using mot::precision_name;

class Matmul {
 public:
  void set_fp32() { precision_ = Precision::fp32; }
  // scratch_a / scratch_b: `scratch_floats` each, enough for any activation operand.
  void set_bf16(const float* rounded_begin, const float* rounded_end, float* scratch_a, float* scratch_b,
                int64_t scratch_floats);
  Precision precision() const { return precision_; }

  // Same contracts as gemm_nt / gemm_nn / gemm_tn in gemm.hpp.
  void nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
          int64_t ldc, float beta);
  void nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
          int64_t ldc, float beta);
  void tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
          int64_t ldc, float beta);

 private:
  // The operand as bf16 values: itself if it lies in the rounded weight copy, else a
  // rounded compact copy in `scratch` (ld becomes cols).
  const float* rounded(const float* p, int64_t& ld, int64_t rows, int64_t cols, float* scratch) const;

  Precision precision_ = Precision::fp32;
  const float* rounded_begin_ = nullptr;
  const float* rounded_end_ = nullptr;
  float* scratch_a_ = nullptr;
  float* scratch_b_ = nullptr;
  int64_t scratch_floats_ = 0;
};

}  // namespace mot::cpu
