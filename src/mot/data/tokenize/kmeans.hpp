// k-means clustering of float vectors (squared Euclidean distance): k-means++
// initialisation then Lloyd iterations. Used for the speech unit codebook over
// normalised log-mel frames. (data/vq.cpp has its own k-means, specialised to image
// patches in [0, 1]; this one is the plain general version.)
//
// Determinism: the result is a pure function of (points, options) on a given build,
// whatever the OpenMP thread count: distances are computed per point in a fixed
// summation order, ties go to the lowest centroid index, and every sum over points is
// taken serially in point order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace mot::audio {

struct KMeansOptions {
  int k = 500;
  uint64_t seed = 0;
  int max_iters = 50;       // Lloyd iterations; stops earlier once no assignment changes
  size_t init_points = 0;   // k-means++ runs on a seeded subsample of this many points (0 = 32*k)
};

struct KMeans {
  int k = 0, dim = 0;
  std::vector<float> centroids;  // k x dim, row-major
  int iters = 0;                 // Lloyd iterations run
  bool converged = false;        // the last iteration changed no assignment
  double distortion = 0;         // mean squared distance to the nearest centroid, at the last assignment
};

// Clusters the n rows of X (n x dim). Throws mot::Error on k outside [1, 2^20], n < k,
// dim < 1, or non-finite values. Empty clusters are re-seeded at the points farthest
// from their centroids. progress(iter, max_iters, distortion) is called after each
// assignment step; it may be empty.
KMeans kmeans(const float* X, size_t n, int dim, const KMeansOptions& opt,
              const std::function<void(int, int, double)>& progress = {});

// Index of the nearest of the k centroids (k x dim) for each of the n rows of X (ties
// -> lowest index), and optionally the squared distance. OpenMP-parallel over rows.
void nearest_centroids(const float* centroids, int k, int dim, const float* X, size_t n, uint32_t* idx,
                       float* dist = nullptr);

}  // namespace mot::audio
