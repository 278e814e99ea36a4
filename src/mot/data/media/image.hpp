// data/media/: decoding and encoding of media files, no tokenization: PNG (here) and
// JPEG (jpeg.hpp). Audio files and signal processing stay in audio/.
//
// An 8-bit RGB image, row-major, channels interleaved (HWC), and PNG input/output
// through libspng (Debian libspng-dev).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mot::data {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height * width * 3
  Image() = default;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 0) {}
  uint8_t* at(int x, int y) { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* at(int x, int y) const { return rgb.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

// Writes atomically (temp file + rename). Throws mot::Error.
void write_png(const std::string& path, const Image& img);
// Reads any PNG libspng decodes, converted to 8-bit RGB. Throws mot::Error naming the path.
Image read_png(const std::string& path);

// Each pixel repeated k x k times (nearest neighbour), for looking at small images.
Image upscale(const Image& img, int k);
// rows[r][c] enlarged `scale` times, in a grid of cells the size of the first image
// (larger images are clipped), `pad` pixels of `background` grey around every cell.
// An empty grid if there are no images.
Image image_grid(const std::vector<std::vector<Image>>& rows, int scale, int pad, uint8_t background);

// Peak signal-to-noise ratio in dB over all channels (255 peak); inf if identical.
double psnr(const Image& a, const Image& b);

}  // namespace mot::data
