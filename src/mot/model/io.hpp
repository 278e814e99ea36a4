// Per-modality inputs and objectives. Sorted rows of one modality are contiguous (the
// routing sort), so each modality's input adapter and objective run on one block of
// rows; modalities that share an adapter or objective object (the token embedding and
// the next-token loss are shared by every token modality) run as one block.
//
// A new kind of input (a continuous vector through a projection, say) is a new
// InputAdapter; a new loss (diffusion ε-MSE, say) is a new Objective; make_input_adapters
// and make_objectives pick them per modality from the config.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "mot/backend/backend.hpp"
#include "mot/model/batch.hpp"
#include "mot/model/config.hpp"
#include "mot/model/params.hpp"
#include "mot/model/routing.hpp"

namespace mot {

// What a loss's gradient is scaled by, per kind of objective: the trainer's
// 1 / (LM targets) and λ / (continuous positions · latent_dim) give d(loss/lm +
// λ·loss/diffusion) (SPEC 2b); a token-only model has only `lm`.
struct LossScale {
  float lm = 0.0f, diffusion = 0.0f;
};

// Transfusion buffers (backend memory), rows relative to the continuous block's first
// sorted row. An image span's rows are contiguous there (the routing sort is stable),
// so its time embedding is computed once per span and broadcast.
struct ContinuousBuffers {
  Mat z;       // [N, D] the noisy latents (inputs)
  Mat eps;     // [N, D] the noise (targets)
  Mat pred;    // [N, D] ε̂, then d(ε̂)
  Mat phi;     // [spans, d] φ(τ) of each span
  Mat t_h;     // [spans, d] W_t1 φ
  Mat t_act;   // [spans, d] silu(W_t1 φ)
  Mat t_emb;   // [spans, d] temb(τ); in backward d(temb)
  Mat t_dact;  // [spans, d] d(silu(...)), then d(W_t1 φ) (training)
  int32_t* span_of = nullptr;   // [N] each row's span
  int32_t* span_seg = nullptr;  // [spans + 1] each span's first row
  int64_t spans = 0;
};

struct AdapterContext {
  Backend& be;
  const Routing& rt;     // sorted row s is batch position rt.perm[s] (= b * batch.len + t)
  const Batch& batch;    // continuous inputs (Batch::vector) are read from here
  const ParamTable& table;
  const float* params;
  float* grads;  // nullptr without training
  const float* weights;  // what GEMMs read (the bf16-rounded copy in bf16)
  ContinuousBuffers& cont;
  Mat scratch;           // [N, d] free while inputs run
};

// How a modality's inputs become rows of the residual stream, and the gradient's way back.
class InputAdapter {
 public:
  virtual ~InputAdapter() = default;
  // Writes rows [s0, s1) of x (the whole stream, sorted rows).
  virtual void forward(const AdapterContext& c, int64_t s0, int64_t s1, Mat x) = 0;
  // Accumulates parameter gradients from rows [s0, s1) of dx.
  virtual void backward(const AdapterContext& c, int64_t s0, int64_t s1, ConstMat dx) = 0;
};

// x[s] = E[token[s]]: the embedding table, tied across token modalities.
class TokenEmbedding final : public InputAdapter {
 public:
  void forward(const AdapterContext& c, int64_t s0, int64_t s1, Mat x) override;
  void backward(const AdapterContext& c, int64_t s0, int64_t s1, ConstMat dx) override;
};

// x[s] = P_in · z[s] + temb(τ of s's image), temb(τ) = W_t2 · silu(W_t1 · φ(τ)) (SPEC 2b).
// The batch's noisy latents and noise are copied to backend memory here (the noise for
// the objective).
class ContinuousInput final : public InputAdapter {
 public:
  ContinuousInput(int modality, int64_t latent_dim) : m_(modality), latent_dim_(latent_dim) {}
  void forward(const AdapterContext& c, int64_t s0, int64_t s1, Mat x) override;
  void backward(const AdapterContext& c, int64_t s0, int64_t s1, ConstMat dx) override;

 private:
  int m_;
  int64_t latent_dim_;
  std::vector<float> host_z_, host_eps_, host_phi_;  // staging, reused
  std::vector<int32_t> host_span_of_, host_seg_;
};

struct ObjectiveContext {
  Backend& be;
  const Routing& rt;
  ContinuousBuffers& cont;
  const ParamTable& table;
  const float* weights;  // what GEMMs read (the bf16-rounded copy in bf16)
  float* grads;          // nullptr without backward
  ConstMat final_normed;     // [N, d] the last layer's output after the final norm
  Mat d_final_normed;        // [N, d] written with backward
  Mat logits;                // [chunk, V] scratch
  double* row_loss;          // [N] written: each row's loss (0 where it has no target)
};

// What a modality's rows are trained on. Fills row_loss of rows [s0, s1) and, with
// backward, d_final_normed of those rows and the parameter gradients, for the loss
// (its kind's scale) * Σ row_loss.
class Objective {
 public:
  virtual ~Objective() = default;
  virtual void run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, const LossScale& scale) = 0;
};

// Next-token cross-entropy through the tied output projection, a chunk of rows at a
// time so that only [chunk, V] logits ever exist.
class NextTokenLoss final : public Objective {
 public:
  void run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, const LossScale& scale) override;
};

// ε-prediction: ε̂ = P_out · x (the final norm's output), row_loss = Σ_j (ε̂_j - ε_j)²
// (SPEC 2b; the mean over positions and latent dimensions is the caller's division).
class DiffusionLoss final : public Objective {
 public:
  explicit DiffusionLoss(int modality) : m_(modality) {}
  void run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, const LossScale& scale) override;

 private:
  int m_;
};

// Calls f(item, s0, s1) for each maximal run of modalities (in sorted-row order) that
// share one item, over the sorted rows [s0, s1) of that run.
template <class Item, class F>
void for_each_block(const std::vector<std::shared_ptr<Item>>& per_modality, const Routing& rt, F&& f) {
  const int M = static_cast<int>(per_modality.size());
  for (int m = 0; m < M;) {
    int e = m + 1;
    while (e < M && per_modality[e] == per_modality[m]) ++e;
    if (rt.mod_begin[e] > rt.mod_begin[m]) f(*per_modality[m], rt.mod_begin[m], rt.mod_begin[e]);
    m = e;
  }
}

// One entry per modality; entries that may run as one block are the same object.
std::vector<std::shared_ptr<InputAdapter>> make_input_adapters(const ModelConfig& c);
std::vector<std::shared_ptr<Objective>> make_objectives(const ModelConfig& c);

}  // namespace mot
