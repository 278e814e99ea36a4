// The model: parameters, gradients, AdamW moments and every activation/workspace
// live in one arena sized at construction for (max_rows, max_len). A training step
// (forward, fused loss, hand-written backward) makes no large heap allocation.
//
// The model is the schedule: which kernel runs on which block of sorted rows with which
// weight copy, and which buffer plays which role. Every kernel is a Backend call
// (backend/backend.hpp); nothing here touches threads or a particular machine.
// Per-layer code lives next to its backward:
//   norm_block.cpp       group-wise RMSNorm forward/backward (per-modality weights)
//   attention_block.cpp  QKV projection, rows -> heads (QK-norm, RoPE), attention, Wo
//   ffn_block.cpp        SwiGLU feed-forward
//   moe_block.cpp        mixture-of-experts feed-forward (expert choice)
//   io.cpp               per-modality input adapters and objectives (token embedding,
//                        next-token cross-entropy)
//   head.cpp             final norm, then the objectives
//   model.cpp            buffers, inputs and the layer loop
#pragma once
#include <cstdint>
#include <vector>

#include <functional>
#include <memory>

#include "mot/backend/backend.hpp"
#include "mot/model/batch.hpp"
#include "mot/model/config.hpp"
#include "mot/model/params.hpp"
#include "mot/model/io.hpp"
#include "mot/model/routing.hpp"

namespace mot {

struct TokenBatch;  // data/format/token_batch.hpp

// Sums of per-target losses (not means), so micro-batches can be combined exactly.
// `loss`/`targets` are the next-token (LM) sums; a continuous modality's entries of
// by_mod / targets_by_mod hold its squared errors and its positions, and `diffusion` /
// `diffusion_values` their totals (values = positions · latent_dim) (SPEC 2b).
struct LossSums {
  double loss = 0.0;
  std::vector<double> by_mod;
  int64_t targets = 0;
  std::vector<int64_t> targets_by_mod;
  double diffusion = 0.0;
  int64_t diffusion_values = 0;
  void reset(int M) {
    loss = 0;
    targets = 0;
    diffusion = 0;
    diffusion_values = 0;
    by_mod.assign(M, 0.0);
    targets_by_mod.assign(M, 0);
  }
  void add(const LossSums& o);
  double lm_mean() const { return targets ? loss / static_cast<double>(targets) : 0.0; }
  double diffusion_mean() const { return diffusion_values ? diffusion / static_cast<double>(diffusion_values) : 0.0; }
  // loss/lm + λ·loss/diffusion (just the LM mean for a token-only model).
  double mean(const ModelConfig& c) const {
    return c.has_continuous() ? lm_mean() + c.diffusion_weight * diffusion_mean() : lm_mean();
  }
  // loss/<modality m>: mean cross-entropy, or a continuous modality's mean squared error.
  double modality_mean(const ModelConfig& c, int m) const {
    const double n = static_cast<double>(targets_by_mod[m]) * (c.modalities[m].continuous ? c.modalities[m].latent_dim() : 1);
    return n > 0 ? by_mod[m] / n : 0.0;
  }
  // Gradient scales giving d(mean(c)) (a mean over these sums' targets).
  LossScale scale(const ModelConfig& c) const {
    LossScale s;
    s.lm = targets > 0 ? 1.0f / static_cast<float>(targets) : 0.0f;
    if (diffusion_values > 0) s.diffusion = static_cast<float>(c.diffusion_weight / static_cast<double>(diffusion_values));
    return s;
  }
};

// Activations one layer keeps for its backward (sorted rows unless noted).
struct LayerActs {
  Mat x_in;      // [N, d] layer input (the residual stream)
  float* rstd1 = nullptr;   // [N] attention-norm rstd
  float* rstd2 = nullptr;   // [N] ffn-norm rstd
  Mat qkv;       // [N, 3d] projections before QK-norm and RoPE
  float* qk_rstd = nullptr; // [N, 2H] QK-norm rstd (q heads then k heads)
  float* Q = nullptr;       // [B, H, T, hd] after QK-norm and RoPE
  float* K = nullptr;
  float* V = nullptr;
  float* O = nullptr;       // [B, H, T, hd] attention output
  float* lse = nullptr;     // [B, H, T]
  Mat cat;       // [N, d] heads concatenated (input of Wo)
  Mat o_raw;     // [N, d] Wo output (post-norm only)
  Mat h;         // [N, d] residual after attention
  Mat ac;        // [N, 2F] W1 x | W3 x (MoE group: rows of the experts' picks)
  Mat moe_prob;  // [N, E] router softmax (MoE only)
  int32_t* moe_pick = nullptr; // [N] MoE group: sorted row of each expert's picks, expert after expert
  int32_t* moe_slot = nullptr; // [N, E] where row s is in expert e's picks (index into moe_pick), -1 if not picked
  Mat f_raw;     // [N, d] W2 output (post-norm only)
};

// Buffers shared by all layers, named by the role they play. Where two roles are never
// live at once they share memory, decided once in carve().
struct Workspace {
  Mat normed;      // [N, d] a sublayer's normalised input (pre-norm), recomputed in backward
  Mat branch_out;  // [N, d] a sublayer's output on its way into the residual stream
  Mat swiglu;      // [N, F] SwiGLU output, recomputed in backward
  Mat final_normed;  // [N, d] the final norm's output (the objectives' input)
  float* rstd_f = nullptr;  // [N]
  Mat logits;      // [chunk, V]
  double* row_loss = nullptr;  // [N]
  float* rope_cos = nullptr;   // [max_len, hd/2]
  float* rope_sin = nullptr;
  // Gradients of activations:
  Mat d_stream;        // [N, d] d(residual stream) entering a layer's backward, leaving it for the layer below
  Mat d_branch;        // [N, d] d(a sublayer's input), added into d_stream; the head: d(final_normed)
  Mat d_sublayer_out;  // [N, d] post-norm: d(a sublayer's raw output, before its norm)
  Mat d_cat;           // [N, d] d(heads concatenated); the memory of whichever of d_branch and
                       // d_sublayer_out is idle during the attention backward
  Mat d_qkv;           // [N, 3d]
  Mat d_ac;            // [N, 2F]
  Mat d_swiglu;        // [N, F]
  float* dQ = nullptr, *dK = nullptr, *dV = nullptr, *dO = nullptr;  // [B, H, T, hd]
  // MoE (rows of a group's picks, or of the group's positions)
  Mat moe_x;       // [N, d] FFN inputs gathered for the experts
  Mat moe_y;       // [N, d] expert outputs; in backward d(output) gathered, then d(input)
  Mat moe_dprob;   // [N, E] d(router softmax), then d(router logits)
  ContinuousBuffers continuous;  // Transfusion only
};

// Keys and values kept across run() calls, for generation: each call writes its
// positions' keys and values at key index past[b] + t of their row and attends over
// everything cached. Per layer [rows, H, capacity, hd] in backend memory; the
// generation code owns it.
struct KvCache {
  int64_t rows = 0, capacity = 0;
  std::vector<float*> k, v;  // one per layer
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
  // precision: the GEMMs' compute precision; parameters, gradients, optimizer state,
  // norms, attention, softmax and loss stay fp32 either way.
  // moment_floats: how many AdamW moment values to hold (0: every parameter's). A
  // data-parallel rank holds only its ZeRO-1 shard's (dist/data_parallel.hpp): then
  // adam_m()[i] belongs to parameter shard.lo + i.
  Model(const ModelConfig& cfg, int64_t max_rows, int64_t max_len, bool training,
        Precision precision = Precision::fp32, Device device = Device::cpu, size_t moment_floats = 0);
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  float* params() { return params_; }
  // An inference model rounds its weights for bf16 once, at its first forward: call
  // this after writing params() again.
  void params_changed() { weights_rounded_ = false; }
  // Generation: every output row of every layer computed from its own row alone, in a
  // fixed order (Backend::set_batch_invariant), so cached and uncached decoding agree
  // bit for bit and a sequence's tokens do not depend on its batch.
  void set_batch_invariant(bool on) { be_->set_batch_invariant(on); }
  float* grads() { return grads_; }
  float* adam_m() { return adam_m_; }
  float* adam_v() { return adam_v_; }
  size_t moment_floats() const { return moment_floats_; }
  // Called during backward with l once layer l's parameter gradients are complete (top
  // layer first), then with -1 after the embeddings' and adapters' (the last ones):
  // data-parallel training starts reducing a layer's gradients while the layers below
  // are still in backward. Empty: no calls.
  void set_grads_hook(std::function<void(int)> hook) { grads_hook_ = std::move(hook); }
  bool training() const { return training_; }
  Precision precision() const { return be_->precision(); }
  Backend& backend() { return *be_; }
  size_t arena_bytes() const { return be_->arena().capacity(); }

  // Forward on a batch (rows <= max_rows, positions <= max_len - 1); adds the loss sums
  // into `out`. With `backward`, also accumulates d(grad_scale * sum of losses)/dparams
  // into grads() (callers zero it).
  // With a continuous modality the loss is loss/lm + λ·loss/diffusion and each
  // objective's gradient takes its own scale (LossScale).
  void run(const Batch& batch, bool backward, const LossScale& scale, LossSums& out);
  void run(const Batch& batch, bool backward, float grad_scale, LossSums& out) {
    run(batch, backward, LossScale{grad_scale, 0.0f}, out);
  }
  // The same on token rows (data/format/token_batch.hpp), translated with to_batch().
  void run(const TokenBatch& tokens, bool backward, const LossScale& scale, LossSums& out);
  void run(const TokenBatch& tokens, bool backward, float grad_scale, LossSums& out) {
    run(tokens, backward, LossScale{grad_scale, 0.0f}, out);
  }

  // Later forward-only runs read and extend `cache` (nullptr: detach). Its rows and
  // capacity must fit the model's max_rows and max_len.
  void attach_kv_cache(KvCache* cache);

  // Generation: the logits of each row's last valid position, [batch.rows, vocab_size]
  // row-major into `logits` (host memory). Forward only; reads and extends an attached
  // KV cache like run().
  void last_logits(const Batch& batch, float* logits);
  // Transfusion sampling: ε̂ of every continuous position of the batch, [n, latent_dim]
  // in batch order (row by row, positions ascending) into `eps` (host memory). Forward
  // only; reads and extends an attached KV cache like run().
  void continuous_outputs(const Batch& batch, float* eps);

  // Mixture of experts at generation (SPEC 2, MoE): expert choice ranks a position
  // against the rest of its row, which a decoder has not produced yet. With thresholds
  // set, a position goes to every expert whose router score reaches that expert's
  // threshold instead; layout [layer][ffn copy][expert] (moe_threshold_count() floats;
  // SwiGLU copies' entries unused). Empty: expert choice.
  // The thresholds travel with the weights (checkpoint metadata) whether or not they
  // route: use_threshold_routing(true) switches routing to them (generation only; eval
  // and training keep expert choice, as trained).
  int64_t moe_threshold_count() const;
  void set_moe_thresholds(std::vector<float> thresholds);
  const std::vector<float>& moe_thresholds() const { return moe_thresholds_; }
  void use_threshold_routing(bool on);
  // Under threshold routing, how its decisions compare with expert choice on the same
  // rows (expert choice is computed too while this is on): over every (position,
  // expert) of the MoE groups, how many decisions agree and how many picks each makes.
  struct RoutingAgreement {
    int64_t decisions = 0, agree = 0, choice_picks = 0, threshold_picks = 0;
  };
  void measure_routing_agreement(bool on);
  const RoutingAgreement& routing_agreement() const { return agreement_; }
  // Calibration: while on, expert-choice forwards record, per (layer, copy, expert),
  // the score of the last position each expert picked in each pool; off returns their
  // means (the thresholds). An entry no pool reached is +inf (the expert takes nothing).
  void begin_moe_calibration();
  std::vector<float> end_moe_calibration();

  const Routing& routing() const { return rt_; }
  // After run(): the loss of batch position (b, t): its cross-entropy, or a continuous
  // position's squared error summed over latent dimensions; 0 without a target. Tests.
  double position_loss(int64_t b, int64_t t) const {
    const int32_t s = rt_.inv[b * rt_.T + t];
    return s < 0 ? 0.0 : ws_.row_loss[s];
  }
  StepTimes& times() { return times_; }

 private:
  void carve(Arena& a);
  void forward_layer(int l);
  void backward_layer(int l);
  // Input adapters and objectives on each run of sorted rows that shares one.
  void inputs_forward(const Batch& batch);
  void inputs_backward(const Batch& batch);
  // Final norm, then each modality's objective; with backward, fills ws_.d_stream.
  void head(bool backward, const LossScale& scale, LossSums& out);

  // norm_block.cpp
  void norm_forward(const std::vector<size_t>& w, ConstMat x, Mat y, float* rstd);
  void norm_apply(const std::vector<size_t>& w, ConstMat x, const float* rstd, Mat y);
  void norm_backward(const std::vector<size_t>& w, ConstMat x, const float* rstd, ConstMat dy, Mat dx,
                     bool accumulate);
  // attention_block.cpp
  void attention_forward(int l, ConstMat in, Mat out);
  void attention_backward(int l, ConstMat in, ConstMat dout, Mat din, bool accumulate);
  HeadLayout head_layout() const;
  // ffn_block.cpp
  void ffn_forward(int l, ConstMat in, Mat out);
  void ffn_backward(int l, ConstMat in, ConstMat dout, Mat din, bool accumulate);
  void swiglu_group_forward(int l, const RowGroup& g, ConstMat in, Mat out);
  void swiglu_group_backward(int l, const RowGroup& g, ConstMat in, ConstMat dout, Mat din, bool accumulate);
  // moe_block.cpp: one MoE row group; same contract as the SwiGLU group functions.
  void moe_forward(int l, const MoeGroup& g, ConstMat in, Mat out);
  void moe_backward(int l, const MoeGroup& g, ConstMat in, ConstMat dout, Mat din, bool accumulate);
  void moe_threshold_forward(int l, const MoeGroup& g, ConstMat in, Mat out);
  void calibrate_group(int l, const MoeGroup& g);
  size_t threshold_index(int l, int copy) const {
    return (static_cast<size_t>(l) * table_.layers[l].experts.size() + copy) * cfg_.n_experts;
  }
  void forward(const Batch& batch);  // checks the batch fits, then routing, inputs and every layer

  ModelConfig cfg_;
  ParamTable table_;
  bool training_;
  std::unique_ptr<Backend> be_;
  int64_t max_rows_, max_len_, max_n_, chunk_;
  float* params_ = nullptr;
  // What the GEMMs read as weights: params_ (fp32), or a bf16-rounded copy of it
  // refreshed at the start of every run() (bf16).
  float* wmat_ = nullptr;
  BackendScratch scratch_;  // the backend's scratch, carved with everything else
  float* grads_ = nullptr;
  float* adam_m_ = nullptr;
  float* adam_v_ = nullptr;
  size_t moment_floats_ = 0;
  std::function<void(int)> grads_hook_;
  std::vector<Mat> xs_;  // residual stream between layers: xs_[0] embeddings, xs_[L] final
  std::vector<LayerActs> acts_;
  Workspace ws_;
  Routing rt_;
  Batch token_batch_;  // run(TokenBatch)'s translation, reused
  KvCache* cache_ = nullptr;
  // Per modality: how its inputs enter and what it is trained on (model/io.hpp).
  std::vector<std::shared_ptr<InputAdapter>> adapters_;
  std::vector<std::shared_ptr<Objective>> objectives_;
  StepTimes times_;
  std::vector<float> moe_thresholds_;
  bool threshold_routing_ = false;
  bool weights_rounded_ = false;
  bool measure_agreement_ = false;
  RoutingAgreement agreement_;
  struct Calibration {
    std::vector<double> sum;
    std::vector<int64_t> count;
  };
  std::unique_ptr<Calibration> calibration_;
  std::vector<int32_t> last_rows_;  // last_logits: the sorted row of each batch row's last position
  // A device backend's copies of the routing tables, in the arena (upload_routing);
  // unused on a host backend, whose kernels read the Routing's vectors.
  struct DeviceTables {
    int32_t* perm = nullptr, *key_slot = nullptr, *input = nullptr, *target = nullptr, *pos = nullptr;
    int32_t* pool_rows = nullptr, *q_len = nullptr, *k_len = nullptr, *lo = nullptr, *hi = nullptr;
    int32_t* last_rows = nullptr;
    ExpertPool* pools = nullptr;
    int64_t max_pools = 0;
  };
  DeviceTables dev_;
  void upload_routing();
};

}  // namespace mot
