// Loss over a data source, by modality (SPEC `eval --json`).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mot/data/format/dataset.hpp"
#include "mot/dist/world.hpp"
#include "mot/model/model.hpp"

namespace mot {

// Evaluates rows [0, max_rows) of src (all rows if max_rows <= 0), `batch` rows at a
// time. Uses the model's forward only. Transfusion: image spans without an explicit τ
// are noised from a generator seeded by their row's index (the same noise in every run
// and at any batch size), with τ = fixed_t when >= 0, else drawn as in training
// (captioning cap, no caption dropout) with train.caption_noise_max = caption_noise_max.
// With a parallel `world`, rank r runs batches r, r + N, ... and the per-batch sums are
// shared and added in batch order: the single-process total, bit for bit.
LossSums evaluate(Model& model, const data::RowSource& src, int64_t batch, int64_t max_rows, TokenBatch& scratch,
                  int32_t fixed_t = -1, int64_t caption_noise_max = 500, dist::World* world = nullptr);

// {"loss", "loss_by_modality", "targets", "targets_by_modality"}, and with a continuous
// modality "loss_lm" and "loss_diffusion" (SPEC 2b)
nlohmann::json loss_json(const ModelConfig& c, const LossSums& s);

}  // namespace mot
