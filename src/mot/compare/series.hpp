// Loss curves read back from a run's metrics.jsonl, and the paper's step-matching
// measure computed on them.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mot::compare {

struct Series {
  std::vector<double> steps, values;
  bool empty() const { return steps.empty(); }
  double final_value() const { return values.back(); }
  double final_step() const { return steps.back(); }
};

// Every numeric key of the lines that have it, e.g. "val_loss/text" -> series.
std::map<std::string, Series> read_metrics(const std::string& metrics_jsonl);

// The (linearly interpolated) step at which `s` first reaches `target` or lower;
// nullopt if it never does.
std::optional<double> first_step_reaching(const Series& s, double target);

// Step-matching ratio: first step at which `variant` reaches `dense`'s final value,
// divided by dense's final step; nullopt when not reached.
std::optional<double> step_matching_ratio(const Series& dense, const Series& variant);

// Mean over several runs' series evaluated at the steps of the first (runs with
// missing points are skipped at that step).
Series mean_series(const std::vector<const Series*>& runs);

}  // namespace mot::compare
