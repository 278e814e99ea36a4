// Sampling from Transfusion models (SPEC 2b): images by DDIM (η = 0) with
// classifier-free guidance, captions by next-token decoding after a clean image.
//
// Images: each prompt (a document start, <bos> caption ...) gets <boi> and an image span
// of pure noise; every DDIM step runs the span's positions (full attention inside it)
// against the prompt's keys and values, which the KV cache holds from one prefill (the
// span's own keys are rewritten in place each step). Without the cache every step
// recomputes the prompt too; both give the same images bit for bit (the model runs
// batch-invariant). Guidance: every row has an unconditional twin, context <bos><boi>,
// in the same batch, and ε = ε_u + w (ε_c - ε_u).
//
// The evenly spaced steps run from T-1 down to 0; the predicted clean image is clipped
// to the latent range [-1, 1] at each step (pixel latents), and the last step's
// prediction is the image.
#pragma once
#include <cstdint>
#include <vector>

#include "mot/backend/precision.hpp"
#include "mot/core/rng.hpp"
#include "mot/generate/sampling.hpp"
#include "mot/model/config.hpp"

namespace mot {

struct TransfusionTokens {
  int32_t bos = -1, eos = -1, boi = -1, eoi = -1;
};

struct DiffusionSampling {
  int64_t steps = 50;   // DDIM steps (1 .. diffusion_steps)
  double cfg = 3.0;     // guidance weight w (0: no guidance, no twin rows)
  // DDIM's η: 0 is deterministic DDIM (SPEC 2b's default); 1 adds the DDPM posterior's
  // noise at every step, which forgives a small model's errors at high τ (results/README).
  double eta = 0.0;
  uint64_t seed = 0;
  bool kv_cache = true;
  Precision precision = Precision::fp32;
  SamplingOptions text;     // captions
  int64_t max_tokens = 64;  // caption tokens at most
};

// The τ of each DDIM step, descending from T-1 to 0 (steps values, steps <= T).
std::vector<int32_t> ddim_steps(int64_t T, int64_t steps);

// One DDIM step on n values: z at a noise level with alpha_bar a becomes z at a_prev
// (a_prev = a leaves z as is when eta = 0), given the noise prediction eps; x0 gets the
// prediction of the clean values, clamped to [-1, 1]. eta > 0 draws n normals from rng.
void ddim_step(float* z, const double* eps, int64_t n, double a, double a_prev, double eta, Rng& rng, float* x0);

// One image per prompt: latents [patches_per_image * latent_dim] in [-1, 1].
// mot::Error for bad options or a prompt that does not fit the model.
std::vector<std::vector<float>> sample_images(const ModelConfig& c, const float* params, const TransfusionTokens& tok,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              const DiffusionSampling& opt);

struct CaptionResult {
  std::vector<int32_t> tokens;  // after <eoi>, up to and including <eos> if it came
  bool finished = false;
};

// A caption per image: context <bos><boi> image (clean, τ = 0) <eoi>, then text until
// <eos> or max_tokens. Row r draws from its own RNG stream (seed, r).
std::vector<CaptionResult> caption_images(const ModelConfig& c, const float* params, const TransfusionTokens& tok,
                                          const std::vector<std::vector<float>>& images, const DiffusionSampling& opt);

}  // namespace mot
