#include "mot/data/tokenize/vq.hpp"

#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "mot/core/error.hpp"
#include "mot/core/sqdist.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/tokenize/kmeans.hpp"
#include "mot/io/safetensors.hpp"

namespace mot::data {
namespace {

constexpr int kMaxPatch = 64;
constexpr int kMaxK = 1 << 24;
constexpr int kTile = 16;       // centroids per register tile (two AVX2 vectors)
constexpr int kRows = 6;        // patches per register tile
constexpr int kBlockRows = 36;  // patches per L1 block of the nearest-centroid search
constexpr size_t kInitChunk = 256;    // points per partial sum in k-means++ sampling
constexpr size_t kAssignBlock = 8 * kBlockRows;  // patches per parallel work item

typedef float v8 __attribute__((vector_size(8 * sizeof(float))));

inline float sqnorm(const float* a, int d) {
  float s = 0;
  for (int j = 0; j < d; ++j) s += a[j] * a[j];
  return s;
}

// The codebook laid out for the nearest-centroid kernel: centroids in tiles of 16,
// each tile transposed to d x 16 and contiguous (Kp = K rounded up to the tile;
// padding is zero), and squared norms (+inf in the padding).
struct Search {
  int d = 0, K = 0, Kp = 0;
  const float* C = nullptr;  // K x d, row-major (the original layout, for exact distances)
  std::vector<float> Ct, cn;
  float max_cn = 0;

  Search(const float* centroids, int K_, int d_) : d(d_), K(K_), Kp((K_ + kTile - 1) / kTile * kTile), C(centroids) {
    Ct.assign(static_cast<size_t>(d) * Kp, 0.0f);
    cn.assign(Kp, std::numeric_limits<float>::infinity());
    for (int k = 0; k < K; ++k) {
      const float* c = C + static_cast<size_t>(k) * d;
      for (int j = 0; j < d; ++j) Ct[(static_cast<size_t>(k / kTile) * d + j) * kTile + k % kTile] = c[j];
      cn[k] = sqnorm(c, d);
      max_cn = std::max(max_cn, cn[k]);
    }
  }

  // Nearest centroid of each of the n rows of X (n x d). Scores ||c||^2 - 2 x.c come
  // from a register-tiled kernel (6 patches x 16 centroids; for a block of up to
  // kBlockRows patches the loop over centroid tiles is outside, so one tile and the
  // block stay in L1); every centroid whose score is within a rounding bound of the
  // best is then re-checked with sqdist(), which makes the final choice (ties -> lowest
  // index). scratch holds scratch_floats() floats.
  size_t scratch_floats() const { return static_cast<size_t>(kBlockRows) * (Kp + 8 + d); }

  void nearest(const float* X, size_t n, uint32_t* idx, float* dist, float* scratch) const {
    const v8 inf = v8{} + std::numeric_limits<float>::infinity();
    float* const scores = scratch;                                     // kBlockRows x Kp
    float* const vmin = scratch + static_cast<size_t>(kBlockRows) * Kp;  // kBlockRows x 8 running minima
    float* const xpack = vmin + static_cast<size_t>(kBlockRows) * 8;      // kBlockRows x d
    for (size_t b0 = 0; b0 < n; b0 += kBlockRows) {
      const int rows = static_cast<int>(std::min<size_t>(kBlockRows, n - b0));
      const float* xb = X + b0 * d;
      for (int r = 0; r < kBlockRows; ++r) std::memcpy(vmin + 8 * r, &inf, sizeof inf);
      // Pack the block in groups of kRows rows interleaved by element (xpack[g][j][r]),
      // so the kernel broadcasts from one pointer; rows past the end repeat the last row.
      for (int q = 0; q * kRows < rows; ++q)
        for (int r = 0; r < kRows; ++r) {
          const float* x = xb + static_cast<size_t>(std::min(q * kRows + r, rows - 1)) * d;
          float* dst = xpack + static_cast<size_t>(q) * kRows * d + r;
          for (int j = 0; j < d; ++j) dst[j * kRows] = x[j];
        }
      for (int k0 = 0; k0 < Kp; k0 += kTile) {
        v8 n0, n1;
        std::memcpy(&n0, cn.data() + k0, sizeof n0);
        std::memcpy(&n1, cn.data() + k0 + 8, sizeof n1);
        for (int r0 = 0; r0 < rows; r0 += kRows) {
          const float* xp = xpack + static_cast<size_t>(r0) * d;
          v8 acc[kRows][2];
#pragma GCC unroll 8
          for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = v8{};
          const float* ct = Ct.data() + static_cast<size_t>(k0) * d;  // tile k0/16: d x 16 contiguous
          for (int j = 0; j < d; ++j, ct += kTile, xp += kRows) {
            v8 c0, c1;
            std::memcpy(&c0, ct, sizeof c0);
            std::memcpy(&c1, ct + 8, sizeof c1);
#pragma GCC unroll 8
            for (int r = 0; r < kRows; ++r) {
              const float y = xp[r];
              acc[r][0] += y * c0;
              acc[r][1] += y * c1;
            }
          }
#pragma GCC unroll 8
          for (int r = 0; r < kRows; ++r) {
            if (r0 + r >= rows) break;
            const v8 lo = n0 - 2.0f * acc[r][0], hi = n1 - 2.0f * acc[r][1];
            float* srow = scores + static_cast<size_t>(r0 + r) * Kp + k0;
            std::memcpy(srow, &lo, sizeof lo);
            std::memcpy(srow + 8, &hi, sizeof hi);
            v8 m;
            std::memcpy(&m, vmin + 8 * (r0 + r), sizeof m);
            m = lo < m ? lo : m;
            m = hi < m ? hi : m;
            std::memcpy(vmin + 8 * (r0 + r), &m, sizeof m);
          }
        }
      }
      for (int r = 0; r < rows; ++r) {
        const float* x = xb + static_cast<size_t>(r) * d;
        v8 vm;
        std::memcpy(&vm, vmin + 8 * r, sizeof vm);
        float m = vm[0];
        for (int l = 1; l < 8; ++l) m = std::min(m, vm[l]);
        // |computed - exact| of a score is below ~(d+2)*eps*(|x|^2 + 2|c|^2), and the
        // re-check itself rounds too: a generous multiple keeps the true nearest in.
        const float xn = sqnorm(x, d);
        const float thr = m + 4.0f * (d + 2) * FLT_EPSILON * (xn + 2.0f * max_cn + 1.0f);
        const float* s = scores + static_cast<size_t>(r) * Kp;
        uint32_t best = 0;
        float best_d = std::numeric_limits<float>::infinity();
        const v8 thrv = v8{} + thr;
        for (int k0 = 0; k0 < Kp; k0 += 8) {  // vector test first: candidates are rare
          v8 v;
          std::memcpy(&v, s + k0, sizeof v);
          const auto mask = v <= thrv;
          uint64_t q[4];
          std::memcpy(q, &mask, sizeof q);
          if ((q[0] | q[1] | q[2] | q[3]) == 0) continue;
          for (int k = k0; k < k0 + 8; ++k) {  // padding scores are +inf, never candidates
            if (s[k] <= thr) {
              const float dk = sqdist(x, C + static_cast<size_t>(k) * d, d);
              if (dk < best_d) best_d = dk, best = static_cast<uint32_t>(k);
            }
          }
        }
        idx[b0 + r] = best;
        if (dist) dist[b0 + r] = best_d;
      }
    }
  }

  // Same over many rows, OpenMP-parallel over fixed blocks (results do not depend on
  // the thread count: each row is computed independently).
  void nearest_parallel(const float* X, size_t n, uint32_t* idx, float* dist) const {
    const size_t blocks = (n + kAssignBlock - 1) / kAssignBlock;
#pragma omp parallel if (blocks > 1)
    {
      std::vector<float> scratch(scratch_floats());
#pragma omp for schedule(dynamic, 4)
      for (size_t b = 0; b < blocks; ++b) {
        const size_t r0 = b * kAssignBlock, r1 = std::min(n, r0 + kAssignBlock);
        nearest(X + r0 * d, r1 - r0, idx + r0, dist ? dist + r0 : nullptr, scratch.data());
      }
    }
  }
};

void check_image_buffer(const Image& img, const std::string& what) {
  if (img.width < 0 || img.height < 0 ||
      img.rgb.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3)
    fail(what, ": image buffer holds ", img.rgb.size(), " bytes, expected ", img.width, "x", img.height, "x3");
}

// Patch (px, py) of img (grid coordinates) as dim floats in [0,1].
inline void extract_patch(const Image& img, int patch, int px, int py, float* out) {
  for (int dy = 0; dy < patch; ++dy) {
    const uint8_t* row = img.at(px * patch, py * patch + dy);
    for (int i = 0; i < patch * 3; ++i) *out++ = row[i] * (1.0f / 255.0f);
  }
}

void check_grid(const VqCodebook& cb, int width, int height, const char* what) {
  if (width < 0 || height < 0 || width % cb.patch != 0 || height % cb.patch != 0)
    fail(what, ": image size ", width, "x", height, " is not a multiple of the patch size ", cb.patch);
}

void check_shape(const VqCodebook& cb, const char* what) {
  if (cb.patch < 1 || cb.patch > kMaxPatch || cb.K < 1 || cb.K > kMaxK ||
      cb.centroids.size() != static_cast<size_t>(cb.K) * cb.dim())
    fail(what, ": codebook is not initialised (patch ", cb.patch, ", K ", cb.K, ", ", cb.centroids.size(),
         " centroid values)");
}

// Tokens of one image whose size was already checked; X holds n_patches x dim floats.
void encode_into(const VqCodebook& cb, const Search& search, const Image& img, uint32_t* tokens,
                 std::vector<float>& X, std::vector<float>& scratch) {
  const int gx = img.width / cb.patch, gy = img.height / cb.patch, d = cb.dim();
  const size_t n = static_cast<size_t>(gx) * gy;
  X.resize(n * d);
  for (int py = 0; py < gy; ++py)
    for (int px = 0; px < gx; ++px)
      extract_patch(img, cb.patch, px, py, X.data() + (static_cast<size_t>(py) * gx + px) * d);
  scratch.resize(search.scratch_floats());
  search.nearest(X.data(), n, tokens, nullptr, scratch.data());
}

int parse_int(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) fail(path, ": not a mot VQ codebook (metadata has no '", key, "')");
  const std::string& s = it->second;
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    fail(path, ": metadata '", key, "' is not an integer");
  return v;
}

}  // namespace

void VqCodebook::validate(const std::string& origin) const {
  if (patch < 1 || patch > kMaxPatch) fail(origin, ": patch size ", patch, " is not in [1, ", kMaxPatch, "]");
  if (K < 1 || K > kMaxK) fail(origin, ": codebook size K=", K, " is not in [1, ", kMaxK, "]");
  const size_t want = static_cast<size_t>(K) * dim();
  if (centroids.size() != want)
    fail(origin, ": codebook holds ", centroids.size(), " values, expected K*dim = ", K, "*", dim(), " = ", want);
  for (size_t i = 0; i < centroids.size(); ++i)
    if (!(centroids[i] >= 0.0f && centroids[i] <= 1.0f))  // also rejects NaN
      fail(origin, ": centroid ", i / dim(), " value ", centroids[i], " is not in [0, 1]");
}

namespace {

// Up to max_patches patches (0 = all) sampled without replacement over the aligned
// grids of all images, in random order, as N x dim floats. Draws from rng.
std::vector<float> sample_patches(const std::vector<Image>& images, int patch, int K, size_t max_patches, Rng& rng) {
  const int d = patch * patch * 3;
  std::vector<uint64_t> first(images.size() + 1, 0);  // global index of each image's first patch
  for (size_t i = 0; i < images.size(); ++i) {
    check_image_buffer(images[i], cat("vq train: image ", i));
    first[i + 1] = first[i] + static_cast<uint64_t>(images[i].width / patch) * (images[i].height / patch);
  }
  const uint64_t total = first.back();
  const uint64_t want = (max_patches == 0 || max_patches >= total) ? total : max_patches;
  if (want < static_cast<uint64_t>(K))
    fail("vq train: only ", want, " patches of ", patch, "x", patch, " available, need at least K=", K);
  std::vector<uint64_t> pick;
  pick.reserve(want);
  for (uint64_t i = 0; i < total && pick.size() < want; ++i)  // Knuth's selection sampling
    if (static_cast<double>(total - i) * rng.uniform() < static_cast<double>(want - pick.size())) pick.push_back(i);
  for (size_t i = pick.size(); i > 1; --i) std::swap(pick[i - 1], pick[rng.below(i)]);  // random order
  const size_t N = pick.size();
  std::vector<float> X(N * d);
#pragma omp parallel for schedule(static)
  for (size_t p = 0; p < N; ++p) {
    const size_t im = std::upper_bound(first.begin(), first.end(), pick[p]) - first.begin() - 1;
    const Image& img = images[im];
    const uint64_t local = pick[p] - first[im];
    const int gx = img.width / patch;
    extract_patch(img, patch, static_cast<int>(local % gx), static_cast<int>(local / gx), X.data() + p * d);
  }
  return X;
}

// How the VQ's k-means departs from the plain one (kmeans.hpp): k-means++ on the first
// 32*K of the already shuffled patches, in chunks; the blocked nearest-centroid search;
// centroids kept in [0, 1]; re-seeds at distinct patches (flat images repeat a patch
// value many times).
KMeansVariant vq_kmeans_variant() {
  KMeansVariant v;
  v.init_on_leading_points = true;
  v.init_chunk = kInitChunk;
  v.lo = 0.0f;
  v.hi = 1.0f;
  v.distinct_reseeds = true;
  v.converge_needs_no_empty = true;
  v.nearest = [](const float* centroids, int K, int d, const float* X, size_t n, uint32_t* idx, float* dist) {
    Search(centroids, K, d).nearest_parallel(X, n, idx, dist);
  };
  return v;
}

}  // namespace

VqCodebook VqCodebook::train(const std::vector<Image>& images, int patch, int K, uint64_t seed, int iters,
                             size_t max_patches, const std::function<void(int, int, double)>& progress) {
  if (patch < 1 || patch > kMaxPatch) fail("vq train: patch size ", patch, " is not in [1, ", kMaxPatch, "]");
  if (K < 1 || K > kMaxK) fail("vq train: codebook size K=", K, " is not in [1, ", kMaxK, "]");
  if (iters < 0) fail("vq train: iterations ", iters, " < 0");
  VqCodebook cb;
  cb.patch = patch;
  cb.K = K;
  Rng rng(seed);
  const std::vector<float> X = sample_patches(images, patch, K, max_patches, rng);
  KMeansOptions ko;
  ko.k = K;
  ko.max_iters = iters;
  cb.centroids = kmeans_with(X.data(), X.size() / cb.dim(), cb.dim(), ko, rng, vq_kmeans_variant(), progress).centroids;
  return cb;
}

void VqCodebook::encode(const Image& img, uint32_t* tokens) const {
  check_shape(*this, "vq encode");
  check_image_buffer(img, "vq encode");
  check_grid(*this, img.width, img.height, "vq encode");
  const Search search(centroids.data(), K, dim());
  const int gx = img.width / patch, gy = img.height / patch, d = dim();
  const size_t n = static_cast<size_t>(gx) * gy;
  if (n >= 2 * kAssignBlock) {  // a large image: extract and search in parallel
    std::vector<float> X(n * d);
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < n; ++p)
      extract_patch(img, patch, static_cast<int>(p % gx), static_cast<int>(p / gx), X.data() + p * d);
    search.nearest_parallel(X.data(), n, tokens, nullptr);
    return;
  }
  std::vector<float> X, scratch;
  encode_into(*this, search, img, tokens, X, scratch);
}

void VqCodebook::encode_batch(const std::vector<Image>& images, uint32_t* tokens) const {
  check_shape(*this, "vq encode");
  std::vector<size_t> offset(images.size() + 1, 0);
  for (size_t i = 0; i < images.size(); ++i) {
    check_image_buffer(images[i], cat("vq encode: image ", i));
    check_grid(*this, images[i].width, images[i].height, cat("vq encode: image ", i).c_str());
    offset[i + 1] = offset[i] + static_cast<size_t>(images[i].width / patch) * (images[i].height / patch);
  }
  const Search search(centroids.data(), K, dim());
#pragma omp parallel if (images.size() > 1)
  {
    std::vector<float> X, scratch;
#pragma omp for schedule(dynamic, 16)
    for (size_t i = 0; i < images.size(); ++i) encode_into(*this, search, images[i], tokens + offset[i], X, scratch);
  }
}

Image VqCodebook::decode(const uint32_t* tokens, int width, int height) const {
  check_shape(*this, "vq decode");
  check_grid(*this, width, height, "vq decode");
  Image img(width, height);
  const int gx = width / patch, gy = height / patch, d = dim();
  for (int py = 0; py < gy; ++py)
    for (int px = 0; px < gx; ++px) {
      const uint32_t t = tokens[static_cast<size_t>(py) * gx + px];
      if (t >= static_cast<uint32_t>(K)) fail("vq decode: token ", t, " is out of range for codebook size ", K);
      const float* c = centroids.data() + static_cast<size_t>(t) * d;
      for (int dy = 0; dy < patch; ++dy) {
        uint8_t* row = img.at(px * patch, py * patch + dy);
        for (int i = 0; i < patch * 3; ++i)
          row[i] = static_cast<uint8_t>(std::clamp(c[dy * patch * 3 + i], 0.0f, 1.0f) * 255.0f + 0.5f);  // round
      }
    }
  return img;
}

void VqCodebook::save(const std::string& path) const {
  validate(path);
  io::write_safetensors(
      path, {{"centroids", io::DType::F32, {K, dim()}, centroids.data()}},
      {{"format", "mot-vq"}, {"patch", std::to_string(patch)}, {"K", std::to_string(K)}});
}

VqCodebook VqCodebook::load(const std::string& path) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  auto fmt = f.metadata().find("format");
  if (fmt == f.metadata().end() || fmt->second != "mot-vq")
    fail(path, ": not a mot VQ codebook (metadata format is not 'mot-vq')");
  VqCodebook cb;
  cb.patch = parse_int(f.metadata(), "patch", path);
  cb.K = parse_int(f.metadata(), "K", path);
  if (cb.patch < 1 || cb.patch > kMaxPatch) fail(path, ": patch size ", cb.patch, " is not in [1, ", kMaxPatch, "]");
  if (cb.K < 1 || cb.K > kMaxK) fail(path, ": codebook size K=", cb.K, " is not in [1, ", kMaxK, "]");
  const io::TensorInfo* t = f.find("centroids");
  if (!t) fail(path, ": no 'centroids' tensor");
  if (t->dtype != io::DType::F32) fail(path, ": 'centroids' has dtype ", t->dtype_name, ", expected F32");
  if (t->shape != std::vector<int64_t>{cb.K, cb.dim()})
    fail(path, ": 'centroids' shape does not match K=", cb.K, " x dim=", cb.dim());
  cb.centroids.resize(static_cast<size_t>(cb.K) * cb.dim());
  f.read_f32(*t, cb.centroids.data());
  cb.validate(path);
  return cb;
}

double reconstruction_psnr(const VqCodebook& cb, const std::vector<Image>& images) {
  if (images.empty()) fail("reconstruction_psnr: no images");
  for (size_t i = 0; i < images.size(); ++i)
    if (images[i].width <= 0 || images[i].height <= 0)
      fail("reconstruction_psnr: image ", i, " is empty (", images[i].width, "x", images[i].height, ")");
  std::vector<size_t> offset(images.size() + 1, 0);
  for (size_t i = 0; i < images.size(); ++i)
    offset[i + 1] = offset[i] + static_cast<size_t>(images[i].width / std::max(cb.patch, 1)) *
                                    (images[i].height / std::max(cb.patch, 1));
  std::vector<uint32_t> tokens(offset.back());
  cb.encode_batch(images, tokens.data());  // validates everything
  std::vector<double> v(images.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < images.size(); ++i) {
    const double p = psnr(images[i], cb.decode(tokens.data() + offset[i], images[i].width, images[i].height));
    v[i] = std::isinf(p) ? 100.0 : p;
  }
  double s = 0;
  for (double x : v) s += x;  // fixed order
  return s / static_cast<double>(images.size());
}

}  // namespace mot::data
