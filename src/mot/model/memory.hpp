// Memory a model set-up needs, computed from the config alone (closed form,
// overflow-checked) so that an absurd size is refused before anything is allocated:
// building the parameter table alone walks every layer, and the arena is mapped and
// pre-faulted in one go. Model's constructor, `mot bench` and the trainer call these.
#pragma once
#include <cstdint>
#include <string>

#include "mot/backend/precision.hpp"
#include "mot/core/checked.hpp"
#include "mot/core/units.hpp"  // format_bytes
#include "mot/model/config.hpp"  // param_count, tensor_count

namespace mot {

struct MemoryNeed {
  int64_t params = 0;       // parameter count
  int64_t weights = 0;      // bytes: parameters (and their bf16-rounded copy)
  int64_t optimizer = 0;    // bytes: gradients and AdamW moments (training only)
  int64_t activations = 0;  // bytes: activations and workspaces
  int64_t arena = 0;        // bytes the Model's arena measures (the three above, aligned), before
                            // rounding up to 2 MiB
  int64_t other = 0;        // bytes, estimated: tensor table, routing indices, one input batch
  int64_t batches = 0;      // bytes: the trainer's grad_accum micro-batches (training_memory only)
  int64_t total() const { return arena + other + batches; }
};

// What Model(c, rows, len, training, precision) allocates. Throws mot::Error when a
// size overflows 64 bits.
MemoryNeed model_memory(const ModelConfig& c, int64_t rows, int64_t len, bool training, Precision precision);

// Refuses (mot::Error, one line stating the need and this machine's RAM) a model set-up
// whose sequence length does not fit the model or whose total need exceeds physical
// RAM. Model's constructor calls it first, so init, eval, grad, train and bench all
// fail fast.
void ensure_model_fits(const ModelConfig& c, int64_t rows, int64_t len, bool training, Precision precision);

// The whole training set-up of `mot train`: the model at batch_size rows of row_len
// tokens plus grad_accum micro-batches of that size. Same refusal as above.
MemoryNeed training_memory(const RunConfig& rc, int64_t row_len);
void ensure_training_fits(const RunConfig& rc, int64_t row_len);

// Physical RAM in bytes (sysconf); 0 if unknown (then nothing is refused for size).
int64_t physical_memory_bytes();

}  // namespace mot
