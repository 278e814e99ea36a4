#include "mot/train/diffusion_draw.hpp"

#include <algorithm>

#include "mot/core/error.hpp"

namespace mot {

DiffusionDraw training_draw(const TrainConfig& t) {
  return DiffusionDraw{t.caption_noise_max, t.cfg_dropout, -1};
}

DiffusionDraw evaluation_draw(const TrainConfig& t, int32_t fixed_t) {
  return DiffusionDraw{t.caption_noise_max, 0.0, fixed_t};
}

int64_t count_continuous(const TokenBatch& tb) {
  return std::count(tb.tokens.begin(), tb.tokens.end(), kContinuousEntry);
}

void draw_diffusion(const ModelConfig& c, const DiffusionDraw& opt, TokenBatch& tb,
                    const std::function<Rng&(int64_t row)>& rng_of_row) {
  const int64_t D = c.latent_dim(), T = c.diffusion_steps;
  if (count_continuous(tb) == 0) return;
  if (opt.fixed_t >= T) fail("diffusion step ", opt.fixed_t, " is outside [0, ", T - 1, "]");
  int64_t spans = 0;
  for (int64_t i = 0; i < tb.rows * tb.len; ++i)
    if (tb.tokens[i] == kContinuousEntry && (i % tb.len == 0 || tb.tokens[i - 1] != kContinuousEntry)) ++spans;
  tb.span_t.resize(static_cast<size_t>(spans), -1);
  tb.noise.resize(tb.latents.size(), 0.0f);
  int64_t span = 0, entry = 0;
  for (int64_t b = 0; b < tb.rows; ++b) {
    int32_t* row = tb.tokens.data() + b * tb.len;
    int64_t doc = 0;  // the current document's first entry
    Rng* rng = nullptr;  // asked for once per row, at its first drawn span
    for (int64_t t = 0; t < tb.len; ++t) {
      if (row[t] == c.bos_id && c.bos_id >= 0) doc = t;
      if (row[t] != kContinuousEntry || (t > 0 && row[t - 1] == kContinuousEntry)) continue;
      int64_t end = t;
      while (end < tb.len && row[end] == kContinuousEntry) ++end;
      const int64_t n = end - t;
      if (tb.span_t[span] >= 0) {  // given with the data (explicit JSONL inputs)
        ++span;
        entry += n;
        t = end - 1;
        continue;
      }
      if (!rng) rng = &rng_of_row(b);
      // Text of the document before the image: entries after its <bos>, before the <boi>.
      const int64_t text0 = row[doc] == c.bos_id ? doc + 1 : doc, text1 = t - 1;
      bool has_text = false;
      for (int64_t k = text0; k < text1; ++k) has_text |= row[k] >= 0;
      const int64_t range = has_text ? T : std::min(T, opt.caption_noise_max > 0 ? opt.caption_noise_max : T);
      const int64_t drawn = static_cast<int64_t>(rng->below(static_cast<uint64_t>(range)));
      tb.span_t[span] = opt.fixed_t >= 0 ? opt.fixed_t : static_cast<int32_t>(drawn);
      if (has_text && opt.cfg_dropout > 0 && rng->uniform() < opt.cfg_dropout) {
        // Drop the caption: entries [text0, text1) leave the row, the rest moves up.
        const int64_t cut = text1 - text0;
        std::copy(row + text1, row + tb.len, row + text0);
        std::fill(row + tb.len - cut, row + tb.len, -1);
        t -= cut;
        end -= cut;
      }
      float* eps = tb.noise.data() + entry * D;
      for (int64_t k = 0; k < n * D; ++k) eps[k] = static_cast<float>(rng->normal());
      ++span;
      entry += n;
      t = end - 1;
    }
  }
}

}  // namespace mot
