// Opt-in per-kernel time accounting for `mot bench --profile`: each kernel entry point
// opens a Scope on its slot. Disabled (the default) a Scope is one predictable branch;
// enabled it reads the clock twice per call, which is noise next to the kernels it
// times (the smallest timed call is a row-wise pass over thousands of rows).
// Not thread-safe by design: every timed call is made from the main thread, outside
// parallel regions.
#pragma once
#include <chrono>
#include <cstdint>

namespace mot::prof {

enum Slot : int {
  GemmForward,      // Y = X·Wᵀ (projections, output head)
  GemmInputGrad,    // dX = dY·W
  GemmWeightGrad,   // dW += dYᵀ·X
  RoundBf16,        // rounding GEMM operands to bf16 (bf16 compute only)
  AttentionForward,
  AttentionBackward,
  Norm,             // RMSNorm forward, recompute and backward
  SwiGLU,           // forward, recompute and backward
  LossSoftmax,      // cross-entropy softmax and its gradient on logit chunks
  Optimizer,        // gradient clipping and AdamW
  kSlots
};

struct Totals {
  double seconds[kSlots] = {};
  double flops[kSlots] = {};
  int64_t calls[kSlots] = {};
};

inline bool g_enabled = false;
inline Totals g_totals;

const char* slot_name(Slot s);

class Scope {
 public:
  explicit Scope(Slot s, double flops = 0) : slot_(s) {
    if (g_enabled) {
      t0_ = std::chrono::steady_clock::now();
      g_totals.flops[s] += flops;
    }
  }
  ~Scope() {
    if (!g_enabled) return;
    g_totals.seconds[slot_] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    g_totals.calls[slot_]++;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Slot slot_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace mot::prof
