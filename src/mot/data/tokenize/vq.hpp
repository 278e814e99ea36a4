// Vector-quantisation image tokenizer: an image is cut into non-overlapping
// patch x patch RGB patches (row-major over the patch grid); each patch becomes the
// index of its nearest codebook centroid (squared Euclidean distance on [0,1] values).
//
// Patch vector layout (dim = patch*patch*3): element ((dy*patch + dx)*3 + c) is channel
// c of pixel (x0+dx, y0+dy), as byte/255.
//
// Nearest-centroid search: scores ||c||^2 - 2 x.c from a register-tiled, L1-blocked
// AVX2 kernel (no BLAS), then every centroid within a rounding bound of the best score
// is re-checked with a fixed-order exact squared distance (ties -> lowest index), so
// a patch equal to a centroid always maps to it.
//
// Determinism: training is a pure function of (images, patch, K, seed, iters,
// max_patches) on a given build, whatever the thread count (per-patch results are
// independent of the work split; sums are taken serially in patch order).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mot/data/media/image.hpp"

namespace mot::data {

struct VqCodebook {
  int patch = 4;                 // patch side in pixels
  int K = 0;                     // codebook size
  std::vector<float> centroids;  // K x (patch*patch*3), values in [0,1]

  int dim() const { return patch * patch * 3; }

  // k-means++ initialisation (on a seeded subsample of at most 32*K patches), then up
  // to `iters` Lloyd iterations over at most `max_patches` patches (0 = all) sampled
  // without replacement from the aligned patch grids of `images` (pixels right of /
  // below the last whole patch are ignored). Stops early once no assignment changes.
  // Empty clusters are re-seeded from the points farthest from their centroid. The
  // k-means is the shared one (kmeans.hpp) with the VQ's variant.
  // progress(iter, iters, distortion) is called after each assignment step (iter is
  // 1-based; distortion = mean squared distance per patch); it may be empty.
  // Throws mot::Error on bad arguments or fewer than K patches.
  static VqCodebook train(const std::vector<Image>& images, int patch, int K, uint64_t seed, int iters,
                          size_t max_patches, const std::function<void(int, int, double)>& progress);

  // (h/patch)*(w/patch) tokens, row-major. Width and height must be multiples of
  // patch (else mot::Error).
  void encode(const Image& img, uint32_t* tokens) const;
  // All images, tokens concatenated in order; OpenMP-parallel over images.
  void encode_batch(const std::vector<Image>& images, uint32_t* tokens) const;
  // Each token is replaced by its centroid patch (rounded to 8 bits). Width and height
  // must be multiples of patch and tokens < K (else mot::Error).
  Image decode(const uint32_t* tokens, int width, int height) const;

  // safetensors: tensor "centroids" F32 [K, dim]; metadata format="mot-vq", patch, K.
  void save(const std::string& path) const;
  // Validates format, metadata, shape and values (finite, in [0,1]); mot::Error naming
  // the path on any mismatch or corruption.
  static VqCodebook load(const std::string& path);

  // Throws mot::Error(origin + ": ...") unless patch, K and centroids are consistent.
  void validate(const std::string& origin) const;
};

// Mean over images of psnr(image, decode(encode(image))), in dB. A perfectly
// reconstructed image counts as 100 dB (instead of infinity) so the mean stays finite.
double reconstruction_psnr(const VqCodebook& cb, const std::vector<Image>& images);

}  // namespace mot::data
