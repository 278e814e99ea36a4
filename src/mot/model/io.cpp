#include "mot/model/io.hpp"

#include <algorithm>

namespace mot {

void TokenEmbedding::forward(const AdapterContext& c, int64_t s0, int64_t s1, Mat x) {
  c.be.embed_forward(c.rt.input.data() + s0, c.params + c.table.tok_embeddings, x.slice(s0, s1));
}

void TokenEmbedding::backward(const AdapterContext& c, int64_t s0, int64_t s1, ConstMat dx) {
  c.be.embed_backward(c.rt.input.data() + s0, dx.slice(s0, s1), c.grads + c.table.tok_embeddings);
}

void NextTokenLoss::run(const ObjectiveContext& c, int64_t s0, int64_t s1, bool backward, float grad_scale) {
  const float* Wout = c.weights + c.table.output;
  const int64_t chunk = c.logits.rows;
  for (int64_t r0 = s0; r0 < s1; r0 += chunk) {
    const int64_t r1 = std::min(s1, r0 + chunk);
    const Mat logits = c.logits.slice(0, r1 - r0);
    const ConstMat xf = c.final_normed.slice(r0, r1);
    c.be.linear_forward(xf, Wout, logits);
    c.be.cross_entropy(logits, c.rt.target.data() + r0, grad_scale, backward, c.row_loss + r0);
    if (backward) {
      c.be.linear_backward_input(logits, Wout, c.d_final_normed.slice(r0, r1), false);
      c.be.linear_backward_weight(logits, xf, c.grads + c.table.output);
    }
  }
}

std::vector<std::shared_ptr<InputAdapter>> make_input_adapters(const ModelConfig& c) {
  const auto tokens = std::make_shared<TokenEmbedding>();
  return std::vector<std::shared_ptr<InputAdapter>>(c.modalities.size(), tokens);
}

std::vector<std::shared_ptr<Objective>> make_objectives(const ModelConfig& c) {
  const auto next_token = std::make_shared<NextTokenLoss>();
  return std::vector<std::shared_ptr<Objective>>(c.modalities.size(), next_token);
}

}  // namespace mot
