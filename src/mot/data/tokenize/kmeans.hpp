// k-means clustering of float vectors (squared Euclidean distance): k-means++
// initialisation then Lloyd iterations. The one implementation behind both learned
// tokenizers: the speech unit codebook (normalised log-mel frames, kmeans()) and the
// image VQ codebook (patches in [0, 1], kmeans_with() and a KMeansVariant that keeps
// its own choices: a faster nearest-centroid search, clamped centroids, distinct
// re-seeds).
//
// Determinism: the result is a pure function of (points, options, seed) on a given
// build, whatever the OpenMP thread count: distances are computed per point in a fixed
// summation order, ties go to the lowest centroid index, and every sum over points is
// taken serially in point order (or in fixed chunks, see KMeansVariant::init_chunk).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace mot {
class Rng;
}

namespace mot::data {

struct KMeansOptions {
  int k = 500;
  uint64_t seed = 0;        // kmeans() only; kmeans_with() takes the generator
  int max_iters = 50;       // Lloyd iterations; stops earlier once no assignment changes
  size_t init_points = 0;   // k-means++ runs on a subsample of this many points (0 = 32*k)
};

struct KMeans {
  int k = 0, dim = 0;
  std::vector<float> centroids;  // k x dim, row-major
  int iters = 0;                 // Lloyd iterations run
  bool converged = false;        // the last iteration changed no assignment
  double distortion = 0;         // mean squared distance to the nearest centroid, at the last assignment
};

// Nearest of the k centroids (k x dim) for each of the n rows of X (ties -> lowest
// index) into idx, and the squared distance into dist (may be null).
using NearestFn = std::function<void(const float* centroids, int k, int dim, const float* X, size_t n,
                                     uint32_t* idx, float* dist)>;

// Where a caller's k-means departs from the plain one (the defaults).
struct KMeansVariant {
  // k-means++ runs on the first init_points points (the caller shuffled them) instead
  // of a seeded, sorted subsample.
  bool init_on_leading_points = false;
  // k-means++ samples from per-chunk sums of this many points (0 = one chunk).
  size_t init_chunk = 0;
  // Each centroid is clamped into [lo, hi] after its mean is taken.
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
  // Re-seeded empty clusters skip points whose vector equals one already used.
  bool distinct_reseeds = false;
  // Convergence (no assignment changed) also needs every cluster to be non-empty.
  bool converge_needs_no_empty = false;
  NearestFn nearest;  // empty: nearest_centroids()
};

// Clusters the n rows of X (n x dim). Throws mot::Error on k outside [1, 2^20], n < k,
// dim < 1, or non-finite values. Empty clusters are re-seeded at the points farthest
// from their centroids. progress(iter, max_iters, distortion) is called after each
// assignment step; it may be empty.
KMeans kmeans(const float* X, size_t n, int dim, const KMeansOptions& opt,
              const std::function<void(int, int, double)>& progress = {});

// The same algorithm, unchecked (the caller validated k, n >= k, dim and the values),
// drawing from rng (opt.seed is ignored) and departing from the plain version as v says.
KMeans kmeans_with(const float* X, size_t n, int dim, const KMeansOptions& opt, Rng& rng, const KMeansVariant& v,
                   const std::function<void(int, int, double)>& progress);

// Index of the nearest of the k centroids (k x dim) for each of the n rows of X (ties
// -> lowest index), and optionally the squared distance. OpenMP-parallel over rows.
void nearest_centroids(const float* centroids, int k, int dim, const float* X, size_t n, uint32_t* idx,
                       float* dist = nullptr);

}  // namespace mot::data
