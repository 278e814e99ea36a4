// Model files (SPEC section 3) and the training state saved beside them.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
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
  // The training RNG's words (train_rng.hpp); absent in state files from before it was saved.
  std::optional<std::array<uint64_t, 4>> rng_state;
};

// state.safetensors: tensors adam_m and adam_v (flat, F32) + metadata (format, step,
// data_cursor, run_config, rng_state: the four RNG words as 16-digit hex numbers).
// The moments are the model's own unless given (a data-parallel rank 0 passes every
// rank's shards gathered; each holds table().total floats).
struct FullMoments {
  float* m = nullptr;
  float* v = nullptr;
};
void save_train_state(const std::string& path, Model& model, const TrainState& s, FullMoments moments = {});
TrainState load_train_state(const std::string& path, Model& model, FullMoments into = {});

// A training run's checkpoint: RUN/checkpoints/step-<N>/{model,state}.safetensors.
// It is written whole under a temporary directory name, both files fsync'ed, then
// renamed into place: that one rename is the commit, so at any instant a checkpoint
// directory either exists complete or not at all. RUN/model.safetensors (SPEC: the
// latest model) is then a hard link to the new model file, and only after that are
// older checkpoints removed. `legacy`: a run from before this layout, whose pair is
// RUN/model.safetensors + RUN/state.safetensors (still resumed; replaced at its next save).
struct Checkpoint {
  int64_t step = 0;
  std::string dir, model, state;
  bool legacy = false;
};

// The newest complete checkpoint of a run, if any.
std::optional<Checkpoint> latest_checkpoint(const std::string& run_dir);

// Writes the checkpoint for `s.step` as described above and returns it. On any
// failure (full disk, ...) throws mot::Error and leaves the previous checkpoint
// untouched; what was half-written is removed.
Checkpoint write_checkpoint(const std::string& run_dir, Model& model, const TrainState& s, FullMoments moments = {});

// Completes a save that a kill cut short after its commit: publishes `newest` as
// RUN/model.safetensors if it is not already, and removes older checkpoints. A resume
// calls it first, so a run killed inside its last save ends as if it had finished.
void finish_interrupted_commit(const std::string& run_dir, const Checkpoint& newest);

// Removes temporaries a killed process left in RUN and RUN/checkpoints. Call with the
// run directory's lock held.
void remove_stale_checkpoint_files(const std::string& run_dir);

// Test hook: when the environment variable MOT_CRASH_POINT equals `name`, the process
// kills itself with SIGKILL here (used by the crash tests to stop inside a save).
void crash_point(const char* name);

}  // namespace mot
