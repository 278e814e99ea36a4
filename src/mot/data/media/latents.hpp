// The Transfusion setting's built-in latent space (SPEC 2b): an image's pixels scaled to
// [-1, 1] (v / 127.5 - 1), cut into patch x patch tiles in raster order, each tile
// flattened in (row, column, channel) order, one latent vector per tile. RGB (3
// channels) only, the images every media reader here produces.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "mot/data/media/image.hpp"

namespace mot::data {

// [ (size/patch)², patch² · 3 ] values. mot::Error unless img is size x size.
std::vector<float> image_to_latents(const Image& img, int size, int patch);
// The reverse, rounding (v + 1) · 127.5 to the nearest byte, clamped to [0, 255].
Image latents_to_image(const float* latents, int size, int patch);
// Pixel bytes in latent order, for shards: the same layout as image_to_latents, unscaled.
std::vector<uint8_t> image_to_patch_bytes(const Image& img, int size, int patch);

// Any HWC grid of `channels` values per cell (a learned autoencoder's latent image,
// latent_space.hpp) in the same latent order, and back.
std::vector<float> grid_to_latents(const float* hwc, int size, int channels, int patch);
std::vector<float> latents_to_grid(const float* latents, int size, int channels, int patch);
// A latent value in [-1, 1] as the byte a shard stores: round((v + 1) · 127.5), clamped
// (pixel_latent is its inverse, to within half a step of 1/127.5).
uint8_t latent_byte(float v);

// One pixel byte as a latent value: v / 127.5 - 1.
inline float pixel_latent(uint8_t v) { return v / 127.5f - 1.0f; }
// Bytes already in latent order (image_to_patch_bytes, a shard's images) as latents,
// appended to `out`.
inline void append_patch_latents(std::span<const uint8_t> bytes, std::vector<float>& out) {
  for (uint8_t v : bytes) out.push_back(pixel_latent(v));
}

}  // namespace mot::data
