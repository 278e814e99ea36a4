// Overflow-checked signed 64-bit arithmetic for sizes computed from user input
// (configs, flags): an overflow anywhere in an expression sticks, and the caller
// asks ok() once at the end instead of testing every step.
#pragma once
#include <cstdint>

namespace mot {

class Checked {
 public:
  constexpr Checked(int64_t v = 0) : v_(v) {}  // NOLINT: implicit on purpose

  bool ok() const { return ok_; }
  int64_t value() const { return v_; }  // meaningful only when ok()

  friend Checked operator+(Checked a, Checked b) {
    Checked r;
    r.ok_ = a.ok_ && b.ok_ && !__builtin_add_overflow(a.v_, b.v_, &r.v_);
    return r;
  }
  friend Checked operator*(Checked a, Checked b) {
    Checked r;
    r.ok_ = a.ok_ && b.ok_ && !__builtin_mul_overflow(a.v_, b.v_, &r.v_);
    return r;
  }
  Checked& operator+=(Checked b) { return *this = *this + b; }
  Checked& operator*=(Checked b) { return *this = *this * b; }
  // Rounds up to a multiple of `m` (> 0).
  Checked round_up(int64_t m) const {
    Checked r = *this + Checked(m - 1);
    if (r.ok_) r.v_ = r.v_ / m * m;
    return r;
  }
  static Checked max(Checked a, Checked b) {
    Checked r = a.v_ >= b.v_ ? a : b;
    r.ok_ = a.ok_ && b.ok_;
    return r;
  }

 private:
  int64_t v_ = 0;
  bool ok_ = true;
};

}  // namespace mot
