#include "mot/compare/summary_json.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "mot/io/atomic_file.hpp"

namespace mot::compare {

namespace {

using nlohmann::json;

json optional_list(const std::vector<std::optional<double>>& v) {
  json a = json::array();
  for (const auto& x : v) a.push_back(x ? json(*x) : json(nullptr));
  return a;
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

// Mean of the last tenth of a per-step series (training losses are logged every step
// and noisy; their tail mean is what the model fits at the end).
double tail_mean(const Series& s) {
  const size_t n = s.values.size(), k = std::max<size_t>(1, n / 10);
  double t = 0;
  for (size_t i = n - k; i < n; ++i) t += s.values[i];
  return t / static_cast<double>(k);
}

}  // namespace

void write_summary_json(const ReportInput& in) {
  json j;
  j["baseline"] = in.variants.front().name;
  j["seeds"] = in.seeds;
  for (const auto& v : in.variants)
    j["variants"].push_back({{"name", v.name},
                             {"params_total", v.params_total},
                             {"params_active", v.params_active},
                             {"train_flops_per_token", v.train_flops_per_token}});
  for (const auto& r : in.runs) {
    json run = {{"variant", r.variant}, {"seed", r.seed}};
    if (auto t = r.metrics.find("tokens"); t != r.metrics.end()) {
      run["steps"] = t->second.final_step();
      run["tokens"] = sum(t->second.values);
    }
    if (auto ms = r.metrics.find("ms"); ms != r.metrics.end()) run["median_ms"] = median(ms->second.values);
    json train = json::object();
    for (const auto& [key, s] : r.metrics)
      if ((key == "loss" || key.rfind("loss/", 0) == 0) && !s.empty()) train[key] = tail_mean(s);
    run["train_loss_tail"] = train;
    j["runs"].push_back(run);
  }
  for (const auto& m : in.metrics) {
    json e = {{"key", m.key}, {"label", m.label}};
    for (const auto& v : in.variants) {
      json finals = json::array();
      for (int seed : in.seeds) {
        const Series s = on_axis(find_run(in, v.name, seed)->metrics, m.key, Axis::Steps, 0);
        finals.push_back(s.empty() ? json(nullptr) : json(s.final_value()));
      }
      e["final"][v.name] = finals;
    }
    for (size_t vi = 1; vi < in.variants.size(); ++vi) {
      const std::string& v = in.variants[vi].name;
      e["step_matching"][v] = optional_list(matching_ratios(in, m, v, Axis::Steps));
      e["reverse_step_matching"][v] = optional_list(matching_ratios(in, m, v, Axis::Steps, true));
      e["flops_matching"][v] = optional_list(matching_ratios(in, m, v, Axis::Flops));
      e["seconds_matching"][v] = optional_list(matching_ratios(in, m, v, Axis::Seconds));
    }
    j["metrics"].push_back(e);
  }
  io::write_file_atomic(in.out_dir + "/summary.json", j.dump(1) + "\n");
}

}  // namespace mot::compare
