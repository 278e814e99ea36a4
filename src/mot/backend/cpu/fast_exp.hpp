// exp(x) for float that the compiler can vectorise (glibc's expf only vectorises
// under -ffast-math). Range reduction x = n ln2 + r with |r| <= ln2/2, a degree-6
// polynomial for e^r and 2^n built in the exponent bits. Relative error < 2e-7 over
// the float range; exp(-inf) = 0, large inputs saturate to +inf, NaN stays NaN.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mot::cpu {

inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.42860682030941723212e-6f;
  // Plain comparisons and the 1.5*2^23 rounding trick keep this inlinable and
  // vectorisable (fminf and nearbyintf are library calls here). The clamp sends NaN to
  // -87.5 (every comparison with NaN is false), so the float -> int conversion below
  // never sees a NaN (undefined behaviour); the last line returns the NaN itself.
  float xc = x > -87.5f ? x : -87.5f;
  xc = xc < 88.5f ? xc : 88.5f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n in two halves so that n = 128 (exp near 88.7) does not overflow the exponent.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t h = ni / 2;
  uint32_t b1 = static_cast<uint32_t>(h + 127) << 23, b2 = static_cast<uint32_t>(ni - h + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  float y = p * s1 * s2;
  y = x < -87.5f ? 0.0f : y;        // underflow (and -inf) -> 0
  y = x > 88.5f ? INFINITY : y;     // overflow -> inf
  return x != x ? x : y;            // NaN propagates
}

}  // namespace mot::cpu
