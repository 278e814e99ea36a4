// AdamW over the flat parameter buffer (decoupled weight decay on matrices except
// the embedding table; none on norms), the learning-rate schedule and global-norm
// gradient clipping. Formulas match torch.optim.AdamW and clip_grad_norm_.
#pragma once
#include <cstdint>

#include "mot/model/config.hpp"
#include "mot/model/model.hpp"

namespace mot {

// Linear warm-up to lr over warmup_steps, then cosine decay to min_lr at `steps`.
// step is 0-based (the step about to be taken).
double lr_at(const TrainConfig& t, int64_t step);

// Returns the gradient's global L2 norm before clipping, and clips in place.
double clip_gradients(Model& m, double max_norm);

// One AdamW update; `t` is the 1-based step number for bias correction.
void adamw_step(Model& m, const TrainConfig& cfg, double lr, int64_t t);

}  // namespace mot
