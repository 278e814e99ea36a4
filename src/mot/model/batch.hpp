// What the model consumes: per position, its modality (explicit: the model never
// derives it from a token id), its input (a token id for a discrete modality; a
// continuous modality adds its vector here), its next-token target and the keys it may
// see. Built from data by data/format/token_batch.hpp (to_batch), or by hand (tests,
// generation).
#pragma once
#include <cstdint>
#include <vector>

namespace mot {

struct Batch {
  int64_t rows = 0, len = 0;     // len: positions per row (the longest row)
  std::vector<int32_t> row_len;  // [rows] valid positions of each row (a prefix; the rest is padding)
  // Per position, [rows * len] row-major; entries past a row's length are ignored.
  std::vector<int32_t> modality;         // index into ModelConfig::modalities
  std::vector<int32_t> token;            // input token id
  std::vector<int32_t> target;           // next-token target id, -1: none
  std::vector<int32_t> target_modality;  // modality of the target, -1: none
  std::vector<int32_t> pos;              // rotary position
  // Visible keys [kv_lo, kv_hi) of the row (key index = position index). Causal:
  // kv_hi = t + 1; documents: kv_lo = the document's first position; a bidirectional
  // span: kv_hi = the span's end for each of its positions.
  std::vector<int32_t> kv_lo, kv_hi;

  int64_t at(int64_t b, int64_t t) const { return b * len + t; }
  // rows x len positions, all padding (no allocation once reserved).
  void resize(int64_t rows_, int64_t len_) {
    rows = rows_;
    len = len_;
    const size_t n = static_cast<size_t>(rows * len);
    row_len.assign(static_cast<size_t>(rows), 0);
    for (auto* v : {&modality, &token, &pos, &kv_lo, &kv_hi}) v->assign(n, 0);
    for (auto* v : {&target, &target_modality}) v->assign(n, -1);
  }
  void reserve(int64_t rows_, int64_t len_) {
    const size_t n = static_cast<size_t>(rows_ * len_);
    row_len.reserve(static_cast<size_t>(rows_));
    for (auto* v : {&modality, &token, &target, &target_modality, &pos, &kv_lo, &kv_hi}) v->reserve(n);
  }
};

}  // namespace mot
