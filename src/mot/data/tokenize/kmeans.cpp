#include "mot/data/tokenize/kmeans.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/core/sqdist.hpp"

namespace mot::data {
namespace {

constexpr int kMaxK = 1 << 20;
constexpr int kInitPerCentroid = 32;

// The points k-means++ runs on: all of them, or M of them: the leading M (the caller
// shuffled), or a seeded subsample (partial Fisher-Yates, then sorted for locality).
std::vector<size_t> init_subsample(size_t n, const KMeansOptions& opt, const KMeansVariant& v, Rng& rng) {
  const size_t want = opt.init_points ? opt.init_points : static_cast<size_t>(kInitPerCentroid) * opt.k;
  const size_t M = std::min(n, std::max(want, static_cast<size_t>(opt.k)));
  std::vector<size_t> pts(v.init_on_leading_points ? M : n);
  std::iota(pts.begin(), pts.end(), size_t{0});
  if (M < pts.size()) {
    for (size_t i = 0; i < M; ++i) std::swap(pts[i], pts[i + rng.below(n - i)]);
    pts.resize(M);
    std::sort(pts.begin(), pts.end());
  }
  return pts;
}

// k-means++ (Arthur and Vassilvitskii 2007) on the rows `pts` of X: the first centre
// uniformly, each next one with probability proportional to the squared distance to
// the nearest centre chosen so far. The distances are summed per chunk of `chunk`
// points (in point order within a chunk), and a draw first picks the chunk.
std::vector<float> kmeanspp(const float* X, const std::vector<size_t>& pts, int dim, int k, size_t chunk, Rng& rng) {
  const size_t M = pts.size();
  if (chunk == 0) chunk = M;
  const size_t chunks = (M + chunk - 1) / chunk;
  std::vector<float> C(static_cast<size_t>(k) * dim);
  std::vector<float> D(M, std::numeric_limits<float>::infinity());
  std::vector<double> csum(chunks, 0.0);
  // One round is small (M*dim flops): a parallel region (two barriers) per round only
  // pays off for large M, and costs milliseconds when the cores are oversubscribed.
  const bool parallel = M * static_cast<size_t>(dim) >= (size_t{1} << 21);
  auto take = [&](int c, size_t p) {
    const float* x = X + pts[p] * dim;
    std::memcpy(C.data() + static_cast<size_t>(c) * dim, x, sizeof(float) * dim);
#pragma omp parallel for schedule(static) if (parallel)
    for (size_t i = 0; i < M; ++i) D[i] = std::min(D[i], sqdist(X + pts[i] * dim, x, dim));
#pragma omp parallel for schedule(static) if (parallel && chunks > 1)
    for (size_t ch = 0; ch < chunks; ++ch) {
      const size_t b = ch * chunk, e = std::min(M, b + chunk);
      double s = 0;
      for (size_t i = b; i < e; ++i) s += D[i];
      csum[ch] = s;
    }
  };
  take(0, rng.below(M));
  for (int c = 1; c < k; ++c) {
    double total = 0;
    for (double s : csum) total += s;  // chunk order: deterministic
    size_t p = 0;
    if (!(total > 0)) {
      p = rng.below(M);  // fewer distinct points than k: duplicates are unavoidable
    } else {
      double r = rng.uniform() * total;
      size_t ch = 0;
      while (ch + 1 < chunks && r >= csum[ch]) r -= csum[ch++];
      const size_t b = ch * chunk, e = std::min(M, b + chunk);
      double acc = 0;
      size_t last_pos = b;
      p = e;
      for (size_t i = b; i < e; ++i) {
        if (D[i] > 0) last_pos = i;
        acc += D[i];
        if (acc > r && D[i] > 0) {
          p = i;
          break;
        }
      }
      if (p == e) p = last_pos;  // r fell past the end through rounding
    }
    take(c, p);
  }
  return C;
}

// Per-cluster sums and counts of the assigned points (serially, in point order); the
// indices of the clusters left empty.
std::vector<int> sum_clusters(const float* X, int dim, const std::vector<uint32_t>& assign, std::vector<double>& sums,
                              std::vector<uint64_t>& counts) {
  std::fill(sums.begin(), sums.end(), 0.0);
  std::fill(counts.begin(), counts.end(), 0);
  for (size_t i = 0; i < assign.size(); ++i) {
    const uint32_t a = assign[i];
    ++counts[a];
    double* s = sums.data() + static_cast<size_t>(a) * dim;
    const float* x = X + i * dim;
    for (int j = 0; j < dim; ++j) s[j] += x[j];
  }
  std::vector<int> empty;
  for (size_t c = 0; c < counts.size(); ++c)
    if (counts[c] == 0) empty.push_back(static_cast<int>(c));
  return empty;
}

// Each non-empty cluster's centroid becomes the mean of its points, clamped to [lo, hi].
void move_to_means(const std::vector<double>& sums, const std::vector<uint64_t>& counts, int dim,
                   const KMeansVariant& v, float* centroids) {
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] == 0) continue;
    const double inv = 1.0 / static_cast<double>(counts[c]);
    float* cen = centroids + c * dim;
    const double* s = sums.data() + c * dim;
    for (int j = 0; j < dim; ++j) cen[j] = std::clamp(static_cast<float>(s[j] * inv), v.lo, v.hi);
  }
}

// Each empty cluster (in index order) moves to the next point farthest from its
// centroid (ties -> lower point index), with distinct_reseeds skipping points equal
// to one already used (else flat images would re-seed many clusters at one patch
// value); with no point left it keeps its centroid.
void reseed_empty(const float* X, int dim, const std::vector<float>& dist, const std::vector<int>& empty,
                  bool distinct, float* centroids) {
  std::vector<uint32_t> order;
  for (size_t i = 0; i < dist.size(); ++i)
    if (dist[i] > 0) order.push_back(static_cast<uint32_t>(i));
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return dist[a] != dist[b] ? dist[a] > dist[b] : a < b; });
  const size_t bytes = sizeof(float) * dim;
  auto point = [&](uint32_t i) { return X + static_cast<size_t>(i) * dim; };
  std::unordered_multimap<uint64_t, uint32_t> used;  // hashes of the points used so far
  auto key = [&](uint32_t i) { return hash_string(std::string_view(reinterpret_cast<const char*>(point(i)), bytes)); };
  auto used_already = [&](uint32_t i, uint64_t h) {
    auto [lo, hi] = used.equal_range(h);
    for (auto u = lo; u != hi; ++u)
      if (std::memcmp(point(i), point(u->second), bytes) == 0) return true;
    return false;
  };
  size_t o = 0;
  for (int c : empty) {
    uint64_t h = 0;
    if (distinct)
      for (; o < order.size(); ++o)
        if (!used_already(order[o], h = key(order[o]))) break;
    if (o == order.size()) break;
    if (distinct) used.emplace(h, order[o]);
    std::memcpy(centroids + static_cast<size_t>(c) * dim, point(order[o]), bytes);
    ++o;
  }
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
  Rng rng(opt.seed);
  return kmeans_with(X, n, dim, opt, rng, KMeansVariant{}, progress);
}

KMeans kmeans_with(const float* X, size_t n, int dim, const KMeansOptions& opt, Rng& rng, const KMeansVariant& v,
                   const std::function<void(int, int, double)>& progress) {
  const int k = opt.k;
  const NearestFn nearest = v.nearest ? v.nearest : NearestFn(nearest_centroids);
  KMeans km;
  km.k = k;
  km.dim = dim;
  km.centroids = kmeanspp(X, init_subsample(n, opt, v, rng), dim, k, v.init_chunk, rng);

  // Lloyd iterations over all points.
  std::vector<uint32_t> assign(n, std::numeric_limits<uint32_t>::max()), next(n);
  std::vector<float> dist(n);
  std::vector<double> sums(static_cast<size_t>(k) * dim);
  std::vector<uint64_t> counts(k);
  for (int it = 0; it < opt.max_iters; ++it) {
    nearest(km.centroids.data(), k, dim, X, n, next.data(), dist.data());
    size_t changed = 0;
    double distortion = 0;  // summed in point order: deterministic
    for (size_t i = 0; i < n; ++i) {
      changed += next[i] != assign[i];
      distortion += dist[i];
    }
    assign.swap(next);
    km.iters = it + 1;
    km.distortion = distortion / static_cast<double>(n);
    if (progress) progress(it + 1, opt.max_iters, km.distortion);
    const std::vector<int> empty = sum_clusters(X, dim, assign, sums, counts);
    if (changed == 0 && (empty.empty() || !v.converge_needs_no_empty)) {
      km.converged = true;  // the centroids are already the means of their clusters
      break;
    }
    move_to_means(sums, counts, dim, v, km.centroids.data());
    if (!empty.empty()) reseed_empty(X, dim, dist, empty, v.distinct_reseeds, km.centroids.data());
  }
  return km;
}

}  // namespace mot::data
