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

// The gradient norm adds its terms in an order that does not depend on how the flat
// buffer is split over data-parallel ranks: blocks of kNormBlock floats, each summed in
// double in index order, then the blocks in index order. Shards are cut at block edges.
constexpr size_t kNormBlock = 4096;
inline size_t norm_blocks(size_t total) { return (total + kNormBlock - 1) / kNormBlock; }
// partial[b] = the sum of squares of block b, for the blocks of [lo, hi) (lo a multiple
// of kNormBlock; hi one too, or the end of the buffer).
void block_sum_squares(const float* g, size_t lo, size_t hi, double* partial);
double add_in_order(const double* partial, size_t n);

// Returns the gradient's global L2 norm before clipping, and clips in place.
double clip_gradients(Model& m, double max_norm);

// One AdamW update; `t` is the 1-based step number for bias correction.
void adamw_step(Model& m, const TrainConfig& cfg, double lr, int64_t t);
// The same on the flat parameters [lo, hi) only, whose moments are adam_m()/adam_v()
// from index 0 (a ZeRO-1 shard; adamw_step is the range [0, total)). Elementwise, so
// a shard's values are those the whole update gives.
void adamw_range(Model& m, const TrainConfig& cfg, double lr, int64_t t, size_t lo, size_t hi);

}  // namespace mot
