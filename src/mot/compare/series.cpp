#include "mot/compare/series.hpp"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"

namespace mot::compare {

std::map<std::string, Series> read_metrics(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail(path, ": cannot open metrics");
  std::map<std::string, Series> out;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      continue;  // a torn last line of a run that was killed
    }
    if (!j.contains("step")) continue;
    const double step = j["step"].get<double>();
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step" || !it.value().is_number()) continue;
      auto& s = out[it.key()];
      s.steps.push_back(step);
      s.values.push_back(it.value().get<double>());
    }
  }
  return out;
}

std::optional<double> first_step_reaching(const Series& s, double target) {
  for (size_t i = 0; i < s.values.size(); ++i) {
    if (s.values[i] > target) continue;
    if (i == 0) return s.steps[0];
    const double v0 = s.values[i - 1], v1 = s.values[i];
    const double frac = v0 > v1 ? (v0 - target) / (v0 - v1) : 1.0;
    return s.steps[i - 1] + frac * (s.steps[i] - s.steps[i - 1]);
  }
  return std::nullopt;
}

std::optional<double> step_matching_ratio(const Series& dense, const Series& variant) {
  if (dense.empty() || variant.empty()) return std::nullopt;
  auto step = first_step_reaching(variant, dense.final_value());
  if (!step) return std::nullopt;
  return *step / dense.final_step();
}

std::optional<double> reverse_matching_ratio(const Series& dense, const Series& variant) {
  if (dense.empty() || variant.empty()) return std::nullopt;
  auto step = first_step_reaching(dense, variant.final_value());
  if (!step) return std::nullopt;
  return *step / dense.final_step();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

Series mean_series(const std::vector<const Series*>& runs) {
  Series m;
  if (runs.empty()) return m;
  const Series& first = *runs[0];
  for (size_t i = 0; i < first.steps.size(); ++i) {
    double sum = 0;
    int n = 0;
    for (const Series* r : runs)
      for (size_t k = 0; k < r->steps.size(); ++k)
        if (r->steps[k] == first.steps[i]) { sum += r->values[k]; ++n; break; }
    if (n == static_cast<int>(runs.size())) {
      m.steps.push_back(first.steps[i]);
      m.values.push_back(sum / n);
    }
  }
  return m;
}

Series along(const Series& s, const Series& per_step, double scale) {
  // metrics.jsonl has one line per step in step order (a resumed run rewrites the lines
  // after its checkpoint), so the running sum is the total up to each step.
  std::vector<double> cum(per_step.values.size());
  double sum = 0;
  for (size_t i = 0; i < cum.size(); ++i) cum[i] = sum += per_step.values[i];
  Series out;
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const auto it = std::lower_bound(per_step.steps.begin(), per_step.steps.end(), s.steps[i]);
    if (it == per_step.steps.end() || *it != s.steps[i]) continue;
    out.steps.push_back(scale * cum[static_cast<size_t>(it - per_step.steps.begin())]);
    out.values.push_back(s.values[i]);
  }
  return out;
}

Series on_axis(const std::map<std::string, Series>& metrics, const std::string& key, Axis axis,
               double train_flops_per_token) {
  auto get = [&](const std::string& k) {
    auto it = metrics.find(k);
    return it == metrics.end() ? Series{} : it->second;
  };
  const Series s = get(key);
  switch (axis) {
    case Axis::Steps: return s;
    case Axis::Flops: return along(s, get("tokens"), train_flops_per_token);
    case Axis::Seconds: return along(s, get("ms"), 1e-3);
  }
  return s;
}

}  // namespace mot::compare
