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

struct AdapterContext {
  Backend& be;
  const Routing& rt;     // sorted row s is batch position rt.perm[s] (= b * batch.len + t)
  const Batch& batch;    // continuous inputs (Batch::vector) are read from here
  const ParamTable& table;
  const float* params;
  float* grads;  // nullptr without training
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

struct ObjectiveContext {
  Backend& be;
  const Routing& rt;
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
// grad_scale * Σ row_loss.
class Objective {
 public:
  virtual ~Objective() = default;
  virtual void run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, float grad_scale) = 0;
};

// Next-token cross-entropy through the tied output projection, a chunk of rows at a
// time so that only [chunk, V] logits ever exist.
class NextTokenLoss final : public Objective {
 public:
  void run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, float grad_scale) override;
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
