// Data-parallel training with ZeRO-1 (DESIGN: data parallelism) over the model's one
// flat gradient buffer.
//
// The flat parameter range is cut into one shard per rank. Each rank holds the AdamW
// moments of its shard only and updates only those parameters; the updated shards are
// then all-gathered, so every rank starts the next step with the same weights.
//
// Gradients are reduce-scattered in buckets while backward still runs: a layer's
// gradients are final once its backward is done (the hook of Model::set_grads_hook),
// and its bucket is sent then, as an all-to-all that hands every rank the other ranks'
// values of its own shard. The rank adds them itself, in rank order 0, 1, ..., N-1, so
// the sum does not depend on MPI's choice of reduction algorithm: the same job gives the
// same bits run after run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mot/dist/world.hpp"
#include "mot/model/params.hpp"

namespace mot::dist {

// [lo, hi) of rank r of n over `total` floats: equal cuts at kNormBlock edges
// (optimizer.hpp), so every rank's share of the gradient norm is whole blocks.
struct ShardRange {
  size_t lo = 0, hi = 0;
  size_t size() const { return hi - lo; }
};
ShardRange shard_of(size_t total, int rank, int n);

class DataParallel {
 public:
  DataParallel(World& world, const ParamTable& table);

  const ShardRange& shard() const { return mine_; }
  const std::vector<int>& shard_counts() const { return counts_; }
  const std::vector<int>& shard_displs() const { return displs_; }

  // Backward hook: the gradients of layer `layer` (or, at -1, everything else: the
  // embeddings, head and adapters, which are final only after the whole backward)
  // are complete in `grads`: post their buckets, and let earlier ones progress.
  void grads_ready(int layer, const float* grads);
  // Waits for every bucket and writes the rank-order sums into grads[shard].
  void finish_reduce(float* grads);
  // The flat ranges of the buckets, in the order backward completes them, and the hook
  // call (layer, or -1) that completes each.
  struct Range {
    size_t lo, hi;
    int layer;
  };
  static std::vector<Range> bucket_ranges(const ParamTable& table);
  // The gradient's global L2 norm (the shards' sums of squares, added in rank order).
  double global_norm(const float* grads);
  // Every rank's updated shard into every rank's `params`.
  void gather_params(float* params);

  // Seconds this step spent waiting for communication after backward (not hidden
  // behind it), and the floats this rank sent to the others (its reduce-scatter parts
  // and its shard to every other rank); reset by take_step_stats().
  struct StepStats {
    double exposed_s = 0, reduce_s = 0, gather_s = 0;
    int64_t floats_sent = 0;
  };
  StepStats take_step_stats();

 private:
  struct Bucket {
    size_t lo = 0, hi = 0;  // flat range
    int layer = -1;         // the hook call that completes it
    std::vector<int> send_counts, send_displs, recv_counts, recv_displs;
    size_t own_lo = 0, own_n = 0;  // this rank's part of it, and where its contributions land in recv_
    size_t recv_off = 0;
    Pending pending;
    bool posted = false;
  };
  void post(Bucket& b, const float* grads);

  World& w_;
  ShardRange mine_;
  std::vector<int> counts_, displs_;
  std::vector<Bucket> buckets_;
  std::vector<float> recv_;  // size() contributions of every bucket's own part, allocated once
  std::vector<double> norm_partial_;  // one slot per norm block; this rank fills its own
  Pending gather_;
  bool overlap_ = true;
  StepStats stats_;
};

}  // namespace mot::dist
