// Generated token data for smoke tests and the first demo: documents of interleaved
// modality spans whose tokens follow per-modality rules driven by a hidden document
// class, so a model can learn them and per-modality weights have something to gain.
// (The real built-in corpus with images and captions is a separate generator.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mot/model/config.hpp"

namespace mot::data {

struct SynthDoc {
  std::vector<uint32_t> tokens;
};

// Deterministic per (config modalities, seed, index).
SynthDoc synth_document(const ModelConfig& c, uint64_t seed, uint64_t index);

// Writes DIR/train-000.shard and DIR/val-000.shard with about `train_tokens` and
// `val_tokens` tokens (validation documents use different indices).
void write_synth_shards(const ModelConfig& c, const std::string& dir, int64_t train_tokens, int64_t val_tokens,
                        uint64_t seed);

}  // namespace mot::data
