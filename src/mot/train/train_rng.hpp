// The training RNG (DESIGN: its state is part of the training state). Random draws that
// belong to training itself (Transfusion's diffusion time and noise per image, caption
// dropout) come from it. Weight init and the data order have streams of their own (pure
// functions of the seed and epoch), so drawing here changes neither. The trainer owns
// one, saves its four words in state.safetensors (`rng_state`) and restores them on
// resume, so a resumed run draws exactly what the uninterrupted run would have.
#pragma once
#include <cstdint>

#include "mot/core/rng.hpp"

namespace mot {

// The training RNG of a run with this train.seed, as it stands before step `step` + 1
// when nothing was saved: step 0 is a new run; a later step serves state files written
// before `rng_state` existed (the step is mixed in so that such a resumed run does not
// replay the draws of its first steps).
inline Rng train_rng(uint64_t seed, int64_t step = 0) {
  return Rng(seed ^ hash_string("mot/train-rng") ^ (static_cast<uint64_t>(step) * 0x9e3779b97f4a7c15ull));
}

}  // namespace mot
