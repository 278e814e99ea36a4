// Model files (SPEC section 3) and the training state saved beside them.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "mot/core/rng.hpp"
#include "mot/model/config.hpp"
#include "mot/model/model.hpp"

namespace mot {

// Reads only the header of a model file and returns its config (metadata "config").
ModelConfig read_model_config(const std::string& path);

// The "step" a training run stored in a model file's metadata ("" if none).
std::string model_file_step(const std::string& path);

// Copies every tensor of the model from `path` (F32 or BF16/F16 converted) into
// model.params(). Missing, unexpected or mis-shaped tensors are errors.
void load_model_weights(const std::string& path, Model& model);

// Writes params as F32 safetensors with SPEC names and metadata (atomic).
void save_model(const std::string& path, Model& model, const std::map<std::string, std::string>& extra_meta = {});
// Writes an arbitrary flat buffer laid out like the params (e.g. gradients).
void save_like_params(const std::string& path, const Model& model, const float* flat,
                      const std::map<std::string, std::string>& extra_meta = {});

struct TrainState {
  int64_t step = 0;          // optimizer steps done
  uint64_t data_cursor = 0;  // rows consumed
  std::string config_json;   // resolved run config, to detect a mismatch on resume
};

// state.safetensors: tensors adam_m and adam_v (flat, F32) + metadata.
void save_train_state(const std::string& path, Model& model, const TrainState& s);
TrainState load_train_state(const std::string& path, Model& model);

}  // namespace mot
