#include "mot/data/format/token_batch.hpp"

#include <cmath>
#include <memory>

#include "mot/core/error.hpp"
#include "mot/model/diffusion.hpp"

namespace mot {

namespace {

// The continuous entries' latents, noise and τ must all be there (the trainer and the
// evaluation draw τ and noise before building the batch).
void check_continuous(const ModelConfig& c, const TokenBatch& tb) {
  const int64_t D = c.latent_dim();
  int64_t entries = 0, spans = 0;
  for (int64_t i = 0; i < tb.rows * tb.len; ++i)
    if (tb.tokens[i] == kContinuousEntry) {
      ++entries;
      if (i % tb.len == 0 || tb.tokens[i - 1] != kContinuousEntry) ++spans;
    }
  if (entries == 0) return;
  if (tb.latent_dim != D || static_cast<int64_t>(tb.latents.size()) != entries * D)
    fail("batch: ", tb.latents.size(), " latent values of width ", tb.latent_dim, " for ", entries,
         " continuous positions of width ", D);
  if (static_cast<int64_t>(tb.span_t.size()) != spans || tb.noise.size() != tb.latents.size())
    fail("internal: the diffusion steps and noise of ", spans, " image spans were not drawn before the batch was built");
}

}  // namespace

void to_batch(const ModelConfig& c, const TokenBatch& tb, Batch& out) {
  out.resize(tb.rows, tb.len > 0 ? tb.len - 1 : 0);
  const int cm = c.continuous_modality();
  const int64_t D = c.latent_dim();
  bool any_continuous = false;
  for (int32_t v : tb.tokens) any_continuous |= v == kContinuousEntry;
  if (any_continuous && cm < 0)
    fail("token id ", kContinuousEntry, " (a continuous position) but the model has no continuous modality");
  std::unique_ptr<CosineSchedule> schedule;
  int64_t entry = 0, span = -1, span_end = 0;
  if (cm >= 0) {
    check_continuous(c, tb);
    out.enable_vectors(D, true);
    if (any_continuous) schedule = std::make_unique<CosineSchedule>(c.diffusion_steps);
  }
  for (int64_t b = 0; b < tb.rows; ++b) {
    int64_t valid = 0;
    while (valid < tb.len && tb.at(b, valid) != -1) {
      const int32_t tok = tb.at(b, valid);
      if ((tok < 0 && tok != kContinuousEntry) || tok >= c.vocab_size)
        fail("token id ", tok, " (row ", b, ", position ", valid, ") is outside the vocabulary [0, ", c.vocab_size,
             ")");
      ++valid;
    }
    for (int64_t t = valid; t < tb.len; ++t)
      if (tb.at(b, t) != -1)
        fail("row ", b, ": padding (-1) at position ", valid, " is followed by token ", tb.at(b, t),
             " (-1 may only pad the end of a row)");
    if (valid > 0 && tb.at(b, valid - 1) == kContinuousEntry)
      fail("row ", b, ": its last entry (position ", valid - 1,
           ") is continuous; an image span must be followed by a token (<eoi>)");
    const int64_t n = valid > 0 ? valid - 1 : 0;
    out.row_len[b] = static_cast<int32_t>(n);
    int32_t start = 0;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = out.at(b, t);
      const int32_t tok = tb.at(b, t), tgt = tb.at(b, t + 1);
      out.pos[i] = static_cast<int32_t>(t);
      if (tok == kContinuousEntry) {
        const bool first = t == 0 || tb.at(b, t - 1) != kContinuousEntry;
        if (first) {
          ++span;
          span_end = t;
          while (span_end < n && tb.at(b, span_end) == kContinuousEntry) ++span_end;
          const int64_t want = c.modalities[cm].patches_per_image();
          if (span_end - t != want)
            fail("row ", b, ": an image span of ", span_end - t, " positions at position ", t, "; the ",
                 c.modalities[cm].name, " modality has ", want, " patches per image");
        }
        const int32_t tau = tb.span_t[static_cast<size_t>(span)];
        if (tau < 0 || tau >= c.diffusion_steps)
          fail("row ", b, ", position ", t, ": diffusion step ", tau, " is outside [0, ", c.diffusion_steps - 1, "]");
        const float* z0 = tb.latents.data() + entry * D;
        const float* eps = tb.noise.data() + entry * D;
        for (int64_t j = 0; j < D; ++j)
          if (!std::isfinite(z0[j]) || !std::isfinite(eps[j]))
            fail("row ", b, ", position ", t, ": latent or noise value ", j, " is not finite");
        schedule->noise(tau, z0, eps, D, out.vector.data() + i * D);
        std::copy(eps, eps + D, out.noise.data() + i * D);
        out.diffusion_t[i] = tau;
        ++entry;
        out.modality[i] = cm;
        out.token[i] = 0;
        out.target[i] = -1;
        out.target_modality[i] = -1;
        out.kv_lo[i] = start;
        out.kv_hi[i] = static_cast<int32_t>(span_end);  // the whole image: full attention inside it
        continue;
      }
      out.modality[i] = c.modality_of_token(tok);
      out.token[i] = tok;
      const bool lm = tgt >= 0;  // loss/lm: input and target both tokens
      out.target[i] = lm ? tgt : -1;
      out.target_modality[i] = lm ? c.modality_of_token(tgt) : -1;
      if (c.doc_mask && tok == c.bos_id) start = static_cast<int32_t>(t);
      out.kv_lo[i] = start;
      out.kv_hi[i] = static_cast<int32_t>(t + 1);
    }
  }
}

}  // namespace mot
