// What the model consumes: per position, its modality (explicit: the model never
// derives it from a token id), its input (a token id, or a continuous vector), its
// next-token target and the keys it may see. Built from data by data/format/token_batch.hpp (to_batch), or by hand (tests,
// generation).
#pragma once
#include <cstdint>
#include <vector>

namespace mot {

struct Batch {
  int64_t rows = 0, len = 0;     // len: positions per row (the longest row)
  std::vector<int32_t> row_len;  // [rows] valid positions of each row (a prefix; the rest is padding)
  // [rows] keys of the row already in the model's KV cache (generation: the prompt and
  // the tokens decoded so far); this batch's position t is key past[b] + t. Empty: 0.
  std::vector<int32_t> past;
  // Per position, [rows * len] row-major; entries past a row's length are ignored.
  std::vector<int32_t> modality;         // index into ModelConfig::modalities
  std::vector<int32_t> token;            // input token id (discrete modalities)
  // Continuous inputs (a continuous modality's adapter reads them): position i's vector
  // is vector[i * vector_dim, (i + 1) * vector_dim). Empty for token-only batches.
  int64_t vector_dim = 0;
  std::vector<float> vector;
  // Transfusion (SPEC 2b), per continuous position: its image's diffusion step τ
  // ([rows * len], -1 elsewhere; empty for token-only batches) and the noise ε it was
  // noised with (the diffusion target; layout of `vector`, empty without training targets).
  std::vector<int32_t> diffusion_t;
  std::vector<float> noise;
  std::vector<int32_t> target;           // next-token target id, -1: none
  std::vector<int32_t> target_modality;  // modality of the target, -1: none
  std::vector<int32_t> pos;              // rotary position
  // Visible keys [kv_lo, kv_hi) of the row, as key indices (past[b] + position). Causal:
  // kv_hi = key + 1; documents: kv_lo = the document's first key; a bidirectional
  // span: kv_hi = the span's end for each of its positions.
  std::vector<int32_t> kv_lo, kv_hi;

  int64_t at(int64_t b, int64_t t) const { return b * len + t; }
  int32_t past_of(int64_t b) const { return past.empty() ? 0 : past[b]; }
  // Continuous inputs for every position: vector_dim values each (zeros, τ -1).
  void enable_vectors(int64_t dim, bool with_noise) {
    const size_t n = static_cast<size_t>(rows * len);
    vector_dim = dim;
    vector.assign(n * static_cast<size_t>(dim), 0.0f);
    diffusion_t.assign(n, -1);
    if (with_noise) noise.assign(n * static_cast<size_t>(dim), 0.0f);
    else noise.clear();
  }
  // rows x len positions, all padding (no allocation once reserved).
  void resize(int64_t rows_, int64_t len_) {
    rows = rows_;
    len = len_;
    const size_t n = static_cast<size_t>(rows * len);
    row_len.assign(static_cast<size_t>(rows), 0);
    past.clear();
    vector_dim = 0;
    vector.clear();
    diffusion_t.clear();
    noise.clear();
    for (auto* v : {&modality, &token, &pos, &kv_lo, &kv_hi}) v->assign(n, 0);
    for (auto* v : {&target, &target_modality}) v->assign(n, -1);
  }
  void reserve(int64_t rows_, int64_t len_) {
    const size_t n = static_cast<size_t>(rows_ * len_);
    row_len.reserve(static_cast<size_t>(rows_));
    past.reserve(static_cast<size_t>(rows_));
    for (auto* v : {&modality, &token, &target, &target_modality, &pos, &kv_lo, &kv_hi}) v->reserve(n);
  }
};

}  // namespace mot
