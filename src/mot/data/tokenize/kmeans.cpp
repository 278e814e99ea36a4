#include "mot/data/tokenize/kmeans.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "mot/core/error.hpp"
#include "mot/core/sqdist.hpp"
#include "mot/core/rng.hpp"

namespace mot::audio {
namespace {

constexpr int kMaxK = 1 << 20;
constexpr int kInitPerCentroid = 32;

// k-means++ (Arthur and Vassilvitskii 2007) on the rows `pts` of X: the first centre
// uniformly, each next one with probability proportional to the squared distance to
// the nearest centre chosen so far.
std::vector<float> kmeanspp(const float* X, const std::vector<size_t>& pts, int dim, int k, Rng& rng) {
  const size_t M = pts.size();
  std::vector<float> C(static_cast<size_t>(k) * dim);
  std::vector<float> D(M, std::numeric_limits<float>::infinity());
  auto take = [&](int c, size_t p) {
    const float* x = X + pts[p] * dim;
    std::memcpy(C.data() + static_cast<size_t>(c) * dim, x, sizeof(float) * dim);
#pragma omp parallel for schedule(static) if (M > 4096)
    for (size_t i = 0; i < M; ++i) D[i] = std::min(D[i], sqdist(X + pts[i] * dim, x, dim));
  };
  take(0, rng.below(M));
  for (int c = 1; c < k; ++c) {
    double total = 0;
    for (float v : D) total += v;  // point order: deterministic
    size_t p = 0;
    if (!(total > 0)) {
      p = rng.below(M);  // fewer distinct points than k: duplicates are unavoidable
    } else {
      const double r = rng.uniform() * total;
      double acc = 0;
      size_t last_pos = 0;
      p = M;
      for (size_t i = 0; i < M; ++i) {
        if (D[i] > 0) last_pos = i;
        acc += D[i];
        if (acc > r && D[i] > 0) {
          p = i;
          break;
        }
      }
      if (p == M) p = last_pos;  // r fell past the end through rounding
    }
    take(c, p);
  }
  return C;
}

}  // namespace

void nearest_centroids(const float* centroids, int k, int dim, const float* X, size_t n, uint32_t* idx,
                       float* dist) {
#pragma omp parallel for schedule(static) if (n * static_cast<size_t>(k) > 65536)
  for (size_t i = 0; i < n; ++i) {
    const float* x = X + i * dim;
    uint32_t best = 0;
    float best_d = std::numeric_limits<float>::infinity();
    for (int c = 0; c < k; ++c) {
      const float d = sqdist(x, centroids + static_cast<size_t>(c) * dim, dim);
      if (d < best_d) best_d = d, best = static_cast<uint32_t>(c);
    }
    idx[i] = best;
    if (dist) dist[i] = best_d;
  }
}

KMeans kmeans(const float* X, size_t n, int dim, const KMeansOptions& opt,
              const std::function<void(int, int, double)>& progress) {
  if (opt.k < 1 || opt.k > kMaxK) fail("k-means: k=", opt.k, " is not in [1, ", kMaxK, "]");
  if (dim < 1) fail("k-means: dimension ", dim, " < 1");
  if (opt.max_iters < 0) fail("k-means: max_iters ", opt.max_iters, " < 0");
  if (n < static_cast<size_t>(opt.k)) fail("k-means: ", n, " points are fewer than k=", opt.k);
  for (size_t i = 0; i < n * dim; ++i)
    if (!std::isfinite(X[i])) fail("k-means: point ", i / dim, " has a non-finite value");
  const int k = opt.k;
  Rng rng(opt.seed);

  // --- k-means++ on a seeded subsample (partial Fisher-Yates, then sorted for locality).
  const size_t want = opt.init_points ? opt.init_points : static_cast<size_t>(kInitPerCentroid) * k;
  const size_t M = std::min(n, std::max(want, static_cast<size_t>(k)));
  std::vector<size_t> pts(n);
  std::iota(pts.begin(), pts.end(), size_t{0});
  if (M < n) {
    for (size_t i = 0; i < M; ++i) std::swap(pts[i], pts[i + rng.below(n - i)]);
    pts.resize(M);
    std::sort(pts.begin(), pts.end());
  }
  KMeans km;
  km.k = k;
  km.dim = dim;
  km.centroids = kmeanspp(X, pts, dim, k, rng);

  // --- Lloyd iterations over all points.
  std::vector<uint32_t> assign(n, std::numeric_limits<uint32_t>::max()), next(n);
  std::vector<float> dist(n);
  std::vector<double> sums(static_cast<size_t>(k) * dim);
  std::vector<uint64_t> counts(k);
  for (int it = 0; it < opt.max_iters; ++it) {
    nearest_centroids(km.centroids.data(), k, dim, X, n, next.data(), dist.data());
    size_t changed = 0;
    double distortion = 0;
    for (size_t i = 0; i < n; ++i) {
      changed += next[i] != assign[i];
      distortion += dist[i];
    }
    assign.swap(next);
    km.iters = it + 1;
    km.distortion = distortion / static_cast<double>(n);
    if (progress) progress(it + 1, opt.max_iters, km.distortion);
    if (changed == 0) {  // the centroids are already the means of their clusters
      km.converged = true;
      break;
    }
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t a = assign[i];
      ++counts[a];
      double* s = sums.data() + static_cast<size_t>(a) * dim;
      const float* x = X + i * dim;
      for (int j = 0; j < dim; ++j) s[j] += x[j];
    }
    std::vector<int> empty;
    for (int c = 0; c < k; ++c) {
      if (counts[c] == 0) {
        empty.push_back(c);
        continue;
      }
      const double inv = 1.0 / static_cast<double>(counts[c]);
      float* cen = km.centroids.data() + static_cast<size_t>(c) * dim;
      const double* s = sums.data() + static_cast<size_t>(c) * dim;
      for (int j = 0; j < dim; ++j) cen[j] = static_cast<float>(s[j] * inv);
    }
    if (!empty.empty()) {
      // Each empty cluster (in index order) moves to the next point farthest from its
      // centroid (ties -> lower point index); with no point left off-centre it stays.
      std::vector<uint32_t> order;
      for (size_t i = 0; i < n; ++i)
        if (dist[i] > 0) order.push_back(static_cast<uint32_t>(i));
      const size_t take = std::min(order.size(), empty.size());
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(take), order.end(),
                        [&](uint32_t a, uint32_t b) { return dist[a] != dist[b] ? dist[a] > dist[b] : a < b; });
      for (size_t e = 0; e < take; ++e)
        std::memcpy(km.centroids.data() + static_cast<size_t>(empty[e]) * dim, X + static_cast<size_t>(order[e]) * dim,
                    sizeof(float) * dim);
    }
  }
  return km;
}

}  // namespace mot::audio
