// bfloat16: the top 16 bits of an IEEE fp32. Rounding is to nearest, ties to even,
// like torch's float -> bfloat16 conversion; NaN stays NaN (quiet), infinities stay
// infinite, and values past the largest bf16 round to infinity.
#pragma once
#include <bit>
#include <cstdint>

namespace mot::cpu {

inline uint16_t to_bf16_bits(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: keep it quiet
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16_bits(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }
// x rounded to the nearest bf16 value, kept in fp32.
inline float round_bf16(float x) { return from_bf16_bits(to_bf16_bits(x)); }

// y[r*cols + c] = round_bf16(x[r*ldx + c]) for r < rows, c < cols (y compact; may not alias x).
void round_bf16_rows(const float* x, int64_t ldx, int64_t rows, int64_t cols, float* y);
// y[i] = round_bf16(x[i]) over n contiguous values (y may equal x).
void round_bf16_copy(const float* x, float* y, int64_t n);

}  // namespace mot::cpu
