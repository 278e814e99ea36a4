#include "mot/dist/data_parallel.hpp"

#include "mot/train/optimizer.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>

namespace mot::dist {

namespace {

using clock = std::chrono::steady_clock;
double since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

// The layer a tensor belongs to ("layers.<i>.…"), or -1.
int layer_of(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 7);
}

}  // namespace

ShardRange shard_of(size_t total, int rank, int n) {
  auto cut = [&](int k) -> size_t {
    if (k >= n) return total;
    return std::min(total, total / static_cast<size_t>(n) * static_cast<size_t>(k) / kNormBlock * kNormBlock);
  };
  return {cut(rank), cut(rank + 1)};
}

// Each layer's contiguous range (completed top layer first), then what lies before the
// first layer and after the last (completed by the input backward, -1).
std::vector<DataParallel::Range> DataParallel::bucket_ranges(const ParamTable& table) {
  std::vector<std::pair<size_t, size_t>> layer(table.layers.size(), {table.total, 0});
  for (const auto& e : table.entries) {
    const int l = layer_of(e.name);
    if (l < 0) continue;
    layer[l].first = std::min(layer[l].first, e.offset);
    layer[l].second = std::max(layer[l].second, e.offset + e.numel);
  }
  for (size_t l = 1; l < layer.size(); ++l)
    if (layer[l].first != layer[l - 1].second) fail("internal: layer ", l, "'s parameters are not contiguous");
  std::vector<Range> out;
  for (int l = static_cast<int>(layer.size()) - 1; l >= 0; --l) out.push_back({layer[l].first, layer[l].second, l});
  const size_t first = layer.empty() ? table.total : layer.front().first;
  const size_t last = layer.empty() ? table.total : layer.back().second;
  if (first > 0) out.push_back({0, first, -1});
  if (last < table.total) out.push_back({last, table.total, -1});
  return out;
}

DataParallel::DataParallel(World& world, const ParamTable& table) : w_(world) {
  const int n = w_.size();
  if (table.total >= static_cast<size_t>(INT_MAX))
    fail("data-parallel training: the model has ", table.total, " parameters; MPI counts stop at ", INT_MAX);
  mine_ = shard_of(table.total, w_.rank(), n);
  for (int k = 0; k < n; ++k) {
    const ShardRange s = shard_of(table.total, k, n);
    counts_.push_back(static_cast<int>(s.size()));
    displs_.push_back(static_cast<int>(s.lo));
  }
  std::vector<Bucket> bs;
  for (const Range& r : bucket_ranges(table)) {
    Bucket b;
    b.lo = r.lo;
    b.hi = r.hi;
    b.layer = r.layer;
    bs.push_back(std::move(b));
  }
  size_t off = 0;
  for (auto& b : bs) {
    b.send_counts.assign(n, 0);
    b.send_displs.assign(n, 0);
    for (int k = 0; k < n; ++k) {
      const size_t lo = std::max(b.lo, static_cast<size_t>(displs_[k]));
      const size_t hi = std::min(b.hi, static_cast<size_t>(displs_[k]) + static_cast<size_t>(counts_[k]));
      b.send_counts[k] = hi > lo ? static_cast<int>(hi - lo) : 0;
      b.send_displs[k] = static_cast<int>(hi > lo ? lo : 0);
    }
    b.own_lo = std::max(b.lo, mine_.lo);
    b.own_n = static_cast<size_t>(b.send_counts[w_.rank()]);
    b.recv_off = off;
    b.recv_counts.assign(n, static_cast<int>(b.own_n));
    b.recv_displs.resize(n);
    for (int k = 0; k < n; ++k) b.recv_displs[k] = static_cast<int>(off + static_cast<size_t>(k) * b.own_n);
    off += static_cast<size_t>(n) * b.own_n;
  }
  buckets_ = std::move(bs);
  recv_.assign(off, 0.0f);
  norm_partial_.assign(norm_blocks(table.total), 0.0);
  // MOT_DP_OVERLAP=0 (bench/data_parallel): send every bucket after backward instead, to
  // measure how much of the communication the overlap hides.
  const char* o = std::getenv("MOT_DP_OVERLAP");
  overlap_ = !(o && std::string(o) == "0");
}

void DataParallel::post(Bucket& b, const float* grads) {
  w_.alltoallv(grads, b.send_counts, b.send_displs, recv_.data(), b.recv_counts, b.recv_displs, b.pending);
  b.posted = true;
  for (int k = 0; k < w_.size(); ++k) stats_.floats_sent += k == w_.rank() ? 0 : b.send_counts[k];
}

void DataParallel::grads_ready(int layer, const float* grads) {
  if (!overlap_) return;  // finish_reduce posts them all
  for (auto& b : buckets_)
    if (!b.posted && b.layer == layer) post(b, grads);
  for (auto& b : buckets_)
    if (b.posted) w_.test(b.pending);  // progress: MPI moves data only inside its calls
}

void DataParallel::finish_reduce(float* grads) {
  const auto t0 = clock::now();
  const int n = w_.size();
  for (auto& b : buckets_) {
    if (!b.posted) post(b, grads);  // no hook ran (e.g. a layer without parameters)
    w_.wait(b.pending, "gradient reduce-scatter");
    b.posted = false;
    const float* in = recv_.data() + b.recv_off;
    float* out = grads + b.own_lo;
    const int64_t m = static_cast<int64_t>(b.own_n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      float s = in[i];
      for (int k = 1; k < n; ++k) s += in[static_cast<int64_t>(k) * m + i];
      out[i] = s;
    }
  }
  stats_.exposed_s += since(t0);
  stats_.reduce_s += since(t0);
}

// Each block's sum comes from its one owner (the others leave the slot 0, and x + 0 = x),
// so every rank ends with the blocks a single process computes, added in the same order.
double DataParallel::global_norm(const float* grads) {
  std::fill(norm_partial_.begin(), norm_partial_.end(), 0.0);
  if (mine_.size() > 0) block_sum_squares(grads, mine_.lo, mine_.hi, norm_partial_.data());
  w_.allreduce_sum(norm_partial_.data(), norm_partial_.size(), "gradient norm");
  return std::sqrt(add_in_order(norm_partial_.data(), norm_partial_.size()));
}

void DataParallel::gather_params(float* params) {
  const auto t0 = clock::now();
  w_.allgatherv(params, counts_, displs_, gather_);
  stats_.floats_sent += static_cast<int64_t>(w_.size() - 1) * static_cast<int64_t>(mine_.size());
  w_.wait(gather_, "parameter all-gather");
  stats_.exposed_s += since(t0);
  stats_.gather_s += since(t0);
}

DataParallel::StepStats DataParallel::take_step_stats() {
  StepStats s = stats_;
  stats_ = {};
  return s;
}

}  // namespace mot::dist
