// Small models and batches shared by the backend tests (tests/unit/test_device_contract.cpp,
// tests/cuda/test_cuda_parity.cpp): every kind of layer the model has, on rows that
// exercise document masks, image spans and padding.
#pragma once
#include <cstdint>
#include <string>

#include "mot/core/rng.hpp"
#include "mot/data/format/token_batch.hpp"
#include "mot/model/config.hpp"

namespace mot::test {

// `kind`: "dense", "mot", "mot_moe" (MoT with a mixture of experts on the image rows) or
// "transfusion" (MoT; images as 4 continuous patches of 12 values). 2 layers, 4 heads,
// QK-norm, document masks (bos 1); text [0, vocab/2) and image [vocab/2, vocab), or for
// Transfusion text over the whole vocabulary.
inline ModelConfig small_model(const std::string& kind, int64_t dim, int64_t ffn_hidden, int64_t vocab) {
  ModelConfig c;
  c.arch = kind == "dense" ? "dense" : "mot";
  c.dim = dim;
  c.n_layers = 2;
  c.n_heads = 4;
  c.ffn_hidden = ffn_hidden;
  c.vocab_size = vocab;
  c.max_seq_len = 64;
  c.bos_id = 1;
  c.qk_norm = true;
  c.doc_mask = true;
  c.modalities = {{"text", 0, vocab / 2}, {"image", vocab / 2, vocab}};
  if (c.arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  if (kind == "mot_moe") c.moe_modalities = {"image"};
  if (kind == "transfusion") {
    Modality image;
    image.name = "image";
    image.continuous = true;
    image.patch = 2;
    image.channels = 3;
    image.image_size = 4;
    c.modalities = {{"text", 0, vocab}, image};
  }
  c.validate("test");
  return c;
}

// `rows` rows of `len` entries: documents start at 0 and 16, positions 4..7 of every 8
// are image (one 4-patch image per span), the rest text; the last row ends in `pad`
// padding entries. Its last valid entry must be text ((len - pad - 1) % 8 < 4): an image
// span must be followed by a token.
inline TokenBatch mixed_batch(const ModelConfig& c, int64_t rows, int64_t len, int64_t pad, uint64_t seed) {
  TokenBatch b;
  b.rows = rows;
  b.len = len;
  Rng rng(seed);
  const bool continuous = c.has_continuous();
  const int64_t half = c.vocab_size / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t valid = r + 1 == rows ? len - pad : len;
    for (int64_t t = 0; t < len; ++t) {
      int32_t v;
      if (t >= valid) v = -1;
      else if (t == 0 || t == 16) v = 1;  // a document starts
      else if (t % 8 >= 4 && continuous) v = kContinuousEntry;
      else if (t % 8 >= 4) v = static_cast<int32_t>(half + static_cast<int64_t>(rng.below(half)));
      else v = static_cast<int32_t>(2 + rng.below(half - 2));
      b.tokens.push_back(v);
    }
  }
  if (continuous) {
    b.latent_dim = c.latent_dim();
    int64_t spans = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < len; ++t) {
        if (b.tokens[r * len + t] != kContinuousEntry) continue;
        if (t == 0 || b.tokens[r * len + t - 1] != kContinuousEntry) ++spans;
        for (int64_t j = 0; j < b.latent_dim; ++j) {
          b.latents.push_back(static_cast<float>(2 * rng.uniform() - 1));
          b.noise.push_back(static_cast<float>(rng.normal()));
        }
      }
    for (int64_t k = 0; k < spans; ++k) b.span_t.push_back(static_cast<int32_t>(50 + 97 * k % 900));
  }
  return b;
}

}  // namespace mot::test
