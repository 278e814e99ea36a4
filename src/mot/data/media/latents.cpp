#include "mot/data/media/latents.hpp"

#include <algorithm>
#include <cmath>

#include "mot/core/error.hpp"

namespace mot::data {

namespace {
// Calls f(pixel byte, latent index) over the image in latent order.
template <class F>
void for_each_latent(int size, int patch, F&& f, int channels = 3) {
  const int side = size / patch;
  int64_t k = 0;
  for (int ty = 0; ty < side; ++ty)
    for (int tx = 0; tx < side; ++tx)
      for (int y = 0; y < patch; ++y)
        for (int x = 0; x < patch; ++x)
          for (int ch = 0; ch < channels; ++ch) f(tx * patch + x, ty * patch + y, ch, k++);
}

void check_grid(int size, int channels, int patch) {
  if (patch < 1 || size < patch || size % patch || channels < 1)
    fail("internal: a ", size, "x", size, "x", channels, " grid does not cut into ", patch, "x", patch, " tiles");
}

void check(const Image& img, int size, int patch) {
  if (patch < 1 || size % patch) fail("internal: image size ", size, " is not a multiple of the patch ", patch);
  if (img.width != size || img.height != size)
    fail("image of ", img.width, "x", img.height, " pixels; the model's images are ", size, "x", size);
}
}  // namespace

std::vector<float> image_to_latents(const Image& img, int size, int patch) {
  check(img, size, patch);
  std::vector<float> out(static_cast<size_t>(size) * size * 3);
  for_each_latent(size, patch, [&](int x, int y, int ch, int64_t k) { out[k] = pixel_latent(img.at(x, y)[ch]); });
  return out;
}

std::vector<uint8_t> image_to_patch_bytes(const Image& img, int size, int patch) {
  check(img, size, patch);
  std::vector<uint8_t> out(static_cast<size_t>(size) * size * 3);
  for_each_latent(size, patch, [&](int x, int y, int ch, int64_t k) { out[k] = img.at(x, y)[ch]; });
  return out;
}

Image latents_to_image(const float* latents, int size, int patch) {
  Image img(size, size);
  for_each_latent(size, patch, [&](int x, int y, int ch, int64_t k) {
    const double v = std::round((static_cast<double>(latents[k]) + 1.0) * 127.5);
    img.at(x, y)[ch] = static_cast<uint8_t>(std::clamp(std::isfinite(v) ? v : 0.0, 0.0, 255.0));
  });
  return img;
}

std::vector<float> grid_to_latents(const float* hwc, int size, int channels, int patch) {
  check_grid(size, channels, patch);
  std::vector<float> out(static_cast<size_t>(size) * size * channels);
  for_each_latent(size, patch, [&](int x, int y, int ch, int64_t k) {
    out[k] = hwc[(static_cast<size_t>(y) * size + x) * channels + ch];
  }, channels);
  return out;
}

std::vector<float> latents_to_grid(const float* latents, int size, int channels, int patch) {
  check_grid(size, channels, patch);
  std::vector<float> out(static_cast<size_t>(size) * size * channels);
  for_each_latent(size, patch, [&](int x, int y, int ch, int64_t k) {
    out[(static_cast<size_t>(y) * size + x) * channels + ch] = latents[k];
  }, channels);
  return out;
}

uint8_t latent_byte(float v) {
  const double b = std::round((static_cast<double>(v) + 1.0) * 127.5);
  return static_cast<uint8_t>(std::clamp(std::isfinite(b) ? b : 127.0, 0.0, 255.0));
}

}  // namespace mot::data
