// Wall-clock helpers shared by the benchmarks (`mot bench`, `mot bench --generate`).
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

namespace mot::bench {

using clock = std::chrono::steady_clock;
inline double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace mot::bench
