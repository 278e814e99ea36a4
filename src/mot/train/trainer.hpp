// `mot train`: the training loop (SPEC section 4).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mot/backend/backend.hpp"
#include "mot/model/config.hpp"

namespace mot {

struct TrainOptions {
  std::string config_path;            // required unless resuming
  std::vector<std::string> overrides; // --set key=value
  std::string data;                   // --data (overrides [data] path)
  std::string out_dir;                // --out
  bool resume = false;
  std::string init_path;              // --init: start from these weights
  int64_t steps = 0;                  // --steps: total steps of the schedule (0: config)
  int64_t stop_at = 0;                // --stop-at: save and stop after this step (0: never)
  double comm_timeout = 300;          // --comm-timeout: data-parallel collectives give up after this (s)
  Device device = Device::cpu;        // --device (the checkpoints do not depend on it)
};

// Returns the process exit status (0 done, 130 interrupted after saving).
int run_training(const TrainOptions& opt);

}  // namespace mot
