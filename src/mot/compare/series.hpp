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
  std::vector<double> steps, values;  // steps: the x values (training steps unless moved by along())
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

// The other direction, for a variant that ends behind: first step at which `dense`
// reaches `variant`'s final value, divided by dense's final step (0.8: dense got there
// with 80% of its steps, so the variant is about 1/0.8 = 1.25x slower); nullopt when
// dense never gets as low as the variant ends.
std::optional<double> reverse_matching_ratio(const Series& dense, const Series& variant);

// The upper median of `v` (the element at index size/2 once sorted); 0 when empty.
double median(std::vector<double> v);

// Mean over several runs' series evaluated at the steps of the first (runs with
// missing points are skipped at that step).
Series mean_series(const std::vector<const Series*>& runs);

// `s` with each step replaced by `scale` x the running sum of `per_step` up to and
// including that step: e.g. per_step = the "tokens" series and scale = training FLOPs
// per token gives loss against training FLOPs; per_step = "ms" and scale = 1e-3 gives
// loss against training seconds. Points whose step `per_step` lacks are dropped.
Series along(const Series& s, const Series& per_step, double scale);

// The x axes a comparison measures progress on.
enum class Axis { Steps, Flops, Seconds };

// A run's series `key` against `axis`: training steps as logged; training FLOPs =
// target tokens so far x `train_flops_per_token`; seconds = the run's per-step `ms`
// summed (the training step itself: validation and checkpoints are left out, so runs
// that evaluate equally often compare fairly). Empty if the run lacks `key`.
Series on_axis(const std::map<std::string, Series>& metrics, const std::string& key, Axis axis,
               double train_flops_per_token);

}  // namespace mot::compare
