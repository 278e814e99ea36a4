#include "mot/data/format/token_batch.hpp"

#include "mot/core/error.hpp"

namespace mot {

void to_batch(const ModelConfig& c, const TokenBatch& tb, Batch& out) {
  out.resize(tb.rows, tb.len > 0 ? tb.len - 1 : 0);
  for (int64_t b = 0; b < tb.rows; ++b) {
    int64_t valid = 0;
    while (valid < tb.len && tb.at(b, valid) != -1) {
      const int32_t tok = tb.at(b, valid);
      if (tok < 0 || tok >= c.vocab_size)
        fail("token id ", tok, " (row ", b, ", position ", valid, ") is outside the vocabulary [0, ", c.vocab_size,
             ")");
      ++valid;
    }
    for (int64_t t = valid; t < tb.len; ++t)
      if (tb.at(b, t) != -1)
        fail("row ", b, ": padding (-1) at position ", valid, " is followed by token ", tb.at(b, t),
             " (-1 may only pad the end of a row)");
    const int64_t n = valid > 0 ? valid - 1 : 0;
    out.row_len[b] = static_cast<int32_t>(n);
    int32_t start = 0;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = out.at(b, t);
      const int32_t tok = tb.at(b, t), tgt = tb.at(b, t + 1);
      out.modality[i] = c.modality_of_token(tok);
      out.token[i] = tok;
      out.target[i] = tgt;
      out.target_modality[i] = c.modality_of_token(tgt);
      out.pos[i] = static_cast<int32_t>(t);
      if (c.doc_mask && tok == c.bos_id) start = static_cast<int32_t>(t);
      out.kv_lo[i] = start;
      out.kv_hi[i] = static_cast<int32_t>(t + 1);
    }
  }
}

}  // namespace mot
