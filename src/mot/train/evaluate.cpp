#include "mot/train/evaluate.hpp"

#include <algorithm>

#include "mot/dist/loss_sums.hpp"
#include "mot/train/diffusion_draw.hpp"

namespace mot {

LossSums evaluate(Model& model, const data::RowSource& src, int64_t batch, int64_t max_rows, TokenBatch& scratch,
                  int32_t fixed_t, int64_t caption_noise_max, dist::World* world) {
  const ModelConfig& c = model.config();
  const DiffusionDraw draw{caption_noise_max, 0.0, fixed_t};
  Rng row_rng;
  LossSums total;
  total.reset(model.config().n_modalities());
  const int64_t n = max_rows > 0 ? std::min(max_rows, src.n_rows()) : src.n_rows();
  LossSums part;
  const bool split = world && world->parallel();
  dist::LossSlots slots(c.n_modalities(), split ? static_cast<size_t>((n + batch - 1) / batch) : 0);
  for (int64_t r = 0; r < n; r += batch) {
    if (split && (r / batch) % world->size() != world->rank()) continue;
    const int64_t rows = std::min(batch, n - r);
    data::fill_batch(src, static_cast<uint64_t>(r), rows, scratch);
    if (c.has_continuous())
      draw_diffusion(c, draw, scratch, [&](int64_t b) -> Rng& {
        row_rng = Rng(hash_string("mot/eval-noise") ^ static_cast<uint64_t>(r + b) * 0x9e3779b97f4a7c15ull);
        return row_rng;
      });
    part.reset(model.config().n_modalities());
    model.run(scratch, false, 0.0f, part);
    if (split)
      slots.set(static_cast<size_t>(r / batch), part);
    else
      total.add(part);
  }
  if (!split) return total;
  slots.gather(*world, "validation");
  return slots.total();
}

nlohmann::json loss_json(const ModelConfig& c, const LossSums& s) {
  nlohmann::json j;
  j["loss"] = s.mean(c);
  if (c.has_continuous()) {
    j["loss_lm"] = s.lm_mean();
    j["loss_diffusion"] = s.diffusion_mean();
  }
  nlohmann::json by = nlohmann::json::object(), counts = nlohmann::json::object();
  for (int m = 0; m < c.n_modalities(); ++m) {
    if (s.targets_by_mod[m] > 0) by[c.modalities[m].name] = s.modality_mean(c, m);
    counts[c.modalities[m].name] = s.targets_by_mod[m];
  }
  j["loss_by_modality"] = by;
  j["targets"] = s.targets;
  j["targets_by_modality"] = counts;
  return j;
}

}  // namespace mot
