// The CPU backend: fp32 kernels on OpenMP (one thread pool, shared with OpenBLAS), GEMMs
// through OpenBLAS at fp32 or emulated bf16 (matmul.hpp). Every kernel is deterministic:
// bit-identical results for any thread count.
//
// Where the code is:
//   cpu_backend.cpp  linear layers, embedding, norms, residual, SwiGLU, optimizer
//   heads.cpp        rows <-> heads, QK-norm and RoPE
//   attention.cpp    tiled attention under key ranges (attention_tiles.hpp: micro-GEMMs)
//   loss.cpp         chunked next-token cross-entropy
//   experts.cpp      expert choice, gather and combine (mixture of experts)
//   diffusion.cpp    Transfusion: SiLU, ε-MSE, per-span row sums
//   kernels.cpp      row-wise fp32 kernels shared by the above and the benchmarks
#pragma once
#include "mot/backend/backend.hpp"
#include "mot/backend/cpu/matmul.hpp"

namespace mot::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(Precision p) : Backend(p) {}
  const char* name() const override { return "cpu"; }

  void bind_scratch(const BackendScratch& s) override;

  void linear_forward(ConstMat x, const float* W, Mat y) override;
  void linear_backward_input(ConstMat dy, const float* W, Mat dx, bool accumulate) override;
  void linear_backward_weight(ConstMat dy, ConstMat x, float* dW) override;
  void round_weights(const float* params, float* rounded, int64_t n) override;

  void embed_forward(const int32_t* ids, const float* table, Mat x) override;
  void embed_backward(const int32_t* ids, ConstMat dx, float* dtable) override;

  void rmsnorm_forward(ConstMat x, const float* w, float eps, Mat y, float* rstd) override;
  void rmsnorm_apply(ConstMat x, const float* w, const float* rstd, Mat y) override;
  void rmsnorm_backward(ConstMat x, const float* w, const float* rstd, ConstMat dy, Mat dx, bool accumulate,
                        float* dw) override;

  void add(ConstMat a, ConstMat b, Mat y) override;

  void heads_forward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk, float* Q,
                     float* K, float* V) override;
  void heads_backward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk,
                      const float* dQ, const float* dK, const float* dV, Mat dqkv, float* dq_w,
                      float* dk_w) override;
  void heads_to_rows(const HeadLayout& lay, const float* O, Mat cat) override;
  void rows_to_heads(const HeadLayout& lay, ConstMat dcat, float* dO) override;

  void attention_forward(const mot::AttnShape& s, const float* Q, const float* K, const float* V, const KeyRanges& mask,
                         float* O, float* lse) override;
  void attention_backward(const mot::AttnShape& s, const float* Q, const float* K, const float* V, const float* O,
                          const float* lse, const float* dO, const KeyRanges& mask, float* dQ, float* dK,
                          float* dV) override;

  void swiglu_forward(ConstMat ac, Mat g) override;
  void swiglu_backward(ConstMat ac, ConstMat dg, Mat dac) override;

  void cross_entropy(Mat logits, const int32_t* target, float grad_scale, bool backward, double* row_loss) override;

  void silu_forward(ConstMat x, Mat y) override;
  void silu_backward(ConstMat x, ConstMat dy, Mat dx) override;
  void squared_error(Mat pred, ConstMat target, float grad_scale, bool backward, double* row_loss) override;
  void sum_row_segments(ConstMat x, const int32_t* seg, Mat y) override;

  void softmax_rows(Mat z) override;
  void softmax_rows_backward(ConstMat p, Mat dp) override;
  void gather_rows(ConstMat src, const int32_t* rows, Mat dst) override;
  void expert_choice(const ExpertChoice& c, ConstMat prob, int32_t* pick, int32_t* slot) override;
  void expert_combine(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat y, Mat out) override;
  void expert_combine_backward(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat g, Mat dg,
                               Mat dy, Mat dprob) override;
  void expert_scatter_add(int64_t s0, int64_t s1, const int32_t* slot, int64_t experts, ConstMat dx,
                          Mat din) override;
  int64_t expert_threshold_pick(int64_t s0, int64_t s1, ConstMat prob, int64_t e, float threshold,
                                int32_t* pick) override;
  void expert_accumulate(int64_t s0, int64_t s1, ConstMat prob, int64_t e, const int32_t* pick, int64_t n, ConstMat y,
                         Mat out, bool first) override;

  double sum_squares(const float* x, int64_t n) override;
  void scale(float* x, int64_t n, float s) override;
  void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) override;

 private:
  Matmul mm_;
  BackendScratch scratch_;
};

}  // namespace mot::cpu
