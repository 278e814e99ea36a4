// Loss over a data source, by modality (SPEC `eval --json`).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mot/data/format/dataset.hpp"
#include "mot/model/model.hpp"

namespace mot {

// Evaluates rows [0, max_rows) of src (all rows if max_rows <= 0), `batch` rows at a
// time. Uses the model's forward only.
LossSums evaluate(Model& model, const data::RowSource& src, int64_t batch, int64_t max_rows, TokenBatch& scratch);

// {"loss", "loss_by_modality", "targets", "targets_by_modality"}
nlohmann::json loss_json(const ModelConfig& c, const LossSums& s);

}  // namespace mot
