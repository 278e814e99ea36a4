// The model: parameters, gradients, AdamW moments and every activation/workspace
// live in one arena sized at construction for (max_rows, max_len). A training step
// (forward, fused loss, hand-written backward) makes no large heap allocation.
//
// Per-layer code lives next to its backward:
//   norm_block.cpp       group-wise RMSNorm forward/backward (per-modality weights)
//   attention_block.cpp  QKV projection, QK-norm, RoPE, tiled attention, Wo
//   ffn_block.cpp        SwiGLU feed-forward
//   moe_block.cpp        mixture-of-experts feed-forward (expert choice)
//   head.cpp             final norm, output projection, chunked cross-entropy
//   model.cpp            embedding and the layer loop
#pragma once
#include <cstdint>
#include <vector>

#include "mot/backend/cpu/matmul.hpp"
#include "mot/core/arena.hpp"
#include "mot/model/config.hpp"
#include "mot/model/params.hpp"
#include "mot/model/routing.hpp"

namespace mot {

// Sums of per-target losses (not means), so micro-batches can be combined exactly.
struct LossSums {
  double loss = 0.0;
  std::vector<double> by_mod;
  int64_t targets = 0;
  std::vector<int64_t> targets_by_mod;
  void reset(int M) { loss = 0; targets = 0; by_mod.assign(M, 0.0); targets_by_mod.assign(M, 0); }
  void add(const LossSums& o);
};

// Activations one layer keeps for its backward (sorted rows unless noted).
struct LayerActs {
  float* x_in = nullptr;    // [N, d] layer input (the residual stream)
  float* rstd1 = nullptr;   // [N] attention-norm rstd
  float* rstd2 = nullptr;   // [N] ffn-norm rstd
  float* qkv = nullptr;     // [N, 3d] projections before QK-norm and RoPE
  float* qk_rstd = nullptr; // [N, 2H] QK-norm rstd (q heads then k heads)
  float* Q = nullptr;       // [B, H, T, hd] after QK-norm and RoPE
  float* K = nullptr;
  float* V = nullptr;
  float* O = nullptr;       // [B, H, T, hd] attention output
  float* lse = nullptr;     // [B, H, T]
  float* cat = nullptr;     // [N, d] heads concatenated (input of Wo)
  float* o_raw = nullptr;   // [N, d] Wo output (post-norm only)
  float* h = nullptr;       // [N, d] residual after attention
  float* ac = nullptr;      // [N, 2F] W1 x | W3 x (MoE group: rows of the experts' picks)
  float* moe_prob = nullptr;   // [N, E] router softmax (MoE only)
  int32_t* moe_pick = nullptr; // [N] MoE group: sorted row of each expert's picks, expert after expert
  int32_t* moe_slot = nullptr; // [N, E] where row s is in expert e's picks (index into moe_pick), -1 if not picked
  float* f_raw = nullptr;   // [N, d] W2 output (post-norm only)
};

struct Workspace {
  float* xn = nullptr;      // [N, d] normalised input, recomputed in backward
  float* tmp = nullptr;     // [N, d]
  float* g = nullptr;       // [N, F] SwiGLU output, recomputed in backward
  float* xf = nullptr;      // [N, d] final-normed stream
  float* rstd_f = nullptr;  // [N]
  float* logits = nullptr;  // [chunk, V]
  double* row_loss = nullptr;  // [N]
  float* reduce = nullptr;  // norm weight-gradient partial sums
  float* rope_cos = nullptr;   // [max_len, hd/2]
  float* rope_sin = nullptr;
  // gradients of activations
  float* dx = nullptr, *dA = nullptr, *dB = nullptr;  // [N, d]
  float* dqkv = nullptr;    // [N, 3d]
  float* dac = nullptr;     // [N, 2F]
  float* dg = nullptr;      // [N, F]
  float* dQ = nullptr, *dK = nullptr, *dV = nullptr, *dO = nullptr;  // [B, H, T, hd]
  // MoE (rows of a group's picks, or of the group's positions)
  float* moe_x = nullptr;      // [N, d] FFN inputs gathered for the experts
  float* moe_y = nullptr;      // [N, d] expert outputs; in backward d(output) gathered, then d(input)
  float* moe_dprob = nullptr;  // [N, E] d(router softmax), then d(router logits)
  int32_t* moe_order = nullptr;  // [E, N] top-k scratch
};

// Wall-clock seconds spent in each part of run(), accumulated until reset.
struct StepTimes {
  double forward = 0;   // routing, embedding and every layer's forward
  double head = 0;      // final norm, output projection and loss (with its gradient when training)
  double backward = 0;  // every layer's backward and the embedding gradient
};

class Model {
 public:
  // training = false: no gradients/moments, and layers share one activation set.
  // precision: the GEMMs' compute precision (matmul.hpp); parameters, gradients,
  // optimizer state, norms, attention, softmax and loss stay fp32 either way.
  Model(const ModelConfig& cfg, int64_t max_rows, int64_t max_len, bool training,
        cpu::Precision precision = cpu::Precision::fp32);

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  float* params() { return params_; }
  float* grads() { return grads_; }
  float* adam_m() { return adam_m_; }
  float* adam_v() { return adam_v_; }
  bool training() const { return training_; }
  cpu::Precision precision() const { return precision_; }
  size_t arena_bytes() const { return arena_.capacity(); }

  // Forward on a batch; adds the loss sums into `out`. With `backward`, also
  // accumulates d(grad_scale * sum of losses)/dparams into grads() (callers zero it).
  void run(const TokenBatch& batch, bool backward, float grad_scale, LossSums& out);

  const Routing& routing() const { return rt_; }
  StepTimes& times() { return times_; }

 private:
  void carve(Arena& a);
  void forward_layer(int l);
  void backward_layer(int l);
  // head.cpp: final norm + output + cross-entropy; with backward, fills ws_.dx.
  void head(bool backward, float grad_scale, LossSums& out);

  // norm_block.cpp
  void norm_forward(const std::vector<size_t>& w, const float* x, float* y, float* rstd, int64_t d);
  void norm_apply(const std::vector<size_t>& w, const float* x, const float* rstd, float* y, int64_t d);
  void norm_backward(const std::vector<size_t>& w, const float* x, const float* rstd, const float* dy, float* dx,
                     bool accumulate, int64_t d);
  // attention_block.cpp
  void attention_forward(int l, const float* in, float* out);
  void attention_backward(int l, const float* in, const float* dout, float* din, bool accumulate);
  // ffn_block.cpp
  void ffn_forward(int l, const float* in, float* out);
  void ffn_backward(int l, const float* in, const float* dout, float* din, bool accumulate);
  void swiglu_group_forward(int l, const RowGroup& g, const float* in, float* out);
  void swiglu_group_backward(int l, const RowGroup& g, const float* in, const float* dout, float* din,
                             bool accumulate);
  // moe_block.cpp: one MoE row group; same contract as the SwiGLU group functions.
  void moe_forward(int l, const MoeGroup& g, const float* in, float* out);
  void moe_backward(int l, const MoeGroup& g, const float* in, const float* dout, float* din, bool accumulate);
  void moe_choose(const MoeGroup& g, const float* prob, int32_t* pick, int32_t* slot);

  ModelConfig cfg_;
  ParamTable table_;
  bool training_;
  cpu::Precision precision_;
  int64_t max_rows_, max_len_, max_n_, chunk_;
  Arena arena_;
  float* params_ = nullptr;
  // What the GEMMs read as weights: params_ (fp32), or a bf16-rounded copy of it
  // refreshed at the start of every run() (bf16).
  float* wmat_ = nullptr;
  cpu::Matmul mm_;
  float* bf16_scratch_[2] = {nullptr, nullptr};
  int64_t bf16_scratch_floats_ = 0;
  float* grads_ = nullptr;
  float* adam_m_ = nullptr;
  float* adam_v_ = nullptr;
  std::vector<float*> xs_;  // residual stream between layers: xs_[0] embeddings, xs_[L] final
  std::vector<LayerActs> acts_;
  Workspace ws_;
  Routing rt_;
  StepTimes times_;
};

}  // namespace mot
