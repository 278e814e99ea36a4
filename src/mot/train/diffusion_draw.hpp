// Transfusion's training-time draws (SPEC 2b), applied to token rows before they become
// a Batch: per image span whose τ the data does not give, τ and the noise ε; a
// captioning image (one that comes before any text of its document) gets
// τ < caption_noise_max; a caption->image document loses its caption with probability
// cfg_dropout (it becomes <bos><boi> image <eoi>), for classifier-free guidance.
#pragma once
#include <cstdint>
#include <functional>

#include "mot/core/rng.hpp"
#include "mot/data/format/token_batch.hpp"
#include "mot/model/config.hpp"

namespace mot {

struct DiffusionDraw {
  int64_t caption_noise_max = 0;  // 0: captioning images are not capped
  double cfg_dropout = 0.0;
  int32_t fixed_t = -1;           // >= 0: every drawn span gets this τ (evaluation at fixed steps)
};

// The training draws of a run's [train] table.
DiffusionDraw training_draw(const TrainConfig& t);
// Evaluation: the caption cap as in training, no dropout; fixed_t as given.
DiffusionDraw evaluation_draw(const TrainConfig& t, int32_t fixed_t = -1);

// Fills span_t and noise of tb's spans that have none (resizing them as needed; spans
// already given keep theirs) and applies caption dropout to the rows. rng_of_row(b)
// gives the generator row b draws from (rows in order, spans in order, τ, then the
// dropout draw, then the span's noise).
void draw_diffusion(const ModelConfig& c, const DiffusionDraw& opt, TokenBatch& tb,
                    const std::function<Rng&(int64_t row)>& rng_of_row);

// Continuous (-2) entries of the batch: the positions loss/diffusion is a mean over.
int64_t count_continuous(const TokenBatch& tb);

}  // namespace mot
