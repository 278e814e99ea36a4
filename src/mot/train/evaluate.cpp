#include "mot/train/evaluate.hpp"

#include <algorithm>

namespace mot {

LossSums evaluate(Model& model, const data::RowSource& src, int64_t batch, int64_t max_rows, TokenBatch& scratch) {
  LossSums total;
  total.reset(model.config().n_modalities());
  const int64_t n = max_rows > 0 ? std::min(max_rows, src.n_rows()) : src.n_rows();
  LossSums part;
  for (int64_t r = 0; r < n; r += batch) {
    const int64_t rows = std::min(batch, n - r);
    data::fill_batch(src, static_cast<uint64_t>(r), rows, scratch);
    part.reset(model.config().n_modalities());
    model.run(scratch, false, 0.0f, part);
    total.add(part);
  }
  return total;
}

nlohmann::json loss_json(const ModelConfig& c, const LossSums& s) {
  nlohmann::json j;
  j["loss"] = s.targets ? s.loss / static_cast<double>(s.targets) : 0.0;
  nlohmann::json by = nlohmann::json::object(), counts = nlohmann::json::object();
  for (int m = 0; m < c.n_modalities(); ++m) {
    if (s.targets_by_mod[m] > 0) by[c.modalities[m].name] = s.by_mod[m] / static_cast<double>(s.targets_by_mod[m]);
    counts[c.modalities[m].name] = s.targets_by_mod[m];
  }
  j["loss_by_modality"] = by;
  j["targets"] = s.targets;
  j["targets_by_modality"] = counts;
  return j;
}

}  // namespace mot
