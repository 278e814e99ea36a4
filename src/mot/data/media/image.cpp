#include "mot/data/media/image.hpp"

#include <algorithm>

#include <spng.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::data {
namespace {

// Far above anything the corpus uses, but a corrupt header cannot make us allocate
// gigabytes: at most 16384 x 16384 pixels and 256 MiB of decoded RGB.
constexpr uint32_t kMaxSide = 16384;
constexpr size_t kMaxDecodedBytes = size_t{256} << 20;
// Ancillary chunks (text, ICC profiles, ...) are skipped; cap what libspng may buffer.
constexpr size_t kMaxChunkBytes = size_t{64} << 20;

// The 12 bytes every PNG ends with: zero length, "IEND", CRC of "IEND".
constexpr uint8_t kIend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};

struct CtxFree {
  void operator()(spng_ctx* c) const { spng_ctx_free(c); }
};
using Ctx = std::unique_ptr<spng_ctx, CtxFree>;

void check_image(const std::string& path, const Image& img) {
  if (img.width <= 0 || img.height <= 0)
    fail(path, ": cannot write a ", img.width, "x", img.height, " image as PNG (both sides must be >= 1)");
  if (static_cast<uint32_t>(img.width) > kMaxSide || static_cast<uint32_t>(img.height) > kMaxSide)
    fail(path, ": image ", img.width, "x", img.height, " exceeds the ", kMaxSide, " pixel side limit");
  const size_t want = static_cast<size_t>(img.width) * img.height * 3;
  if (img.rgb.size() != want)
    fail(path, ": image buffer holds ", img.rgb.size(), " bytes, expected ", want, " for ", img.width, "x",
         img.height, " RGB");
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open PNG file: ", std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, ": cannot determine the size of the PNG file");
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    fail(path, ": read error on PNG file");
  return bytes;
}

}  // namespace

void write_png(const std::string& path, const Image& img) {
  check_image(path, img);
  Ctx ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (!ctx) fail(path, ": cannot create a PNG encoder (out of memory)");
  int rc = spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(img.width);
  ihdr.height = static_cast<uint32_t>(img.height);
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  if (!rc) rc = spng_set_ihdr(ctx.get(), &ihdr);
  if (!rc)
    rc = spng_encode_image(ctx.get(), img.rgb.data(), img.rgb.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  if (rc) fail(path, ": PNG encoding failed: ", spng_strerror(rc));
  size_t len = 0;
  int err = 0;
  // The buffer was allocated by libspng's default allocator (malloc); we own it now.
  std::unique_ptr<void, decltype(&std::free)> buf(spng_get_png_buffer(ctx.get(), &len, &err), &std::free);
  if (!buf || err) fail(path, ": PNG encoding failed: ", spng_strerror(err ? err : SPNG_EINTERNAL));
  io::AtomicWriter w(path);
  w.write(buf.get(), len);
  w.commit();
}

Image read_png(const std::string& path) {
  const std::vector<uint8_t> bytes = slurp(path);
  if (bytes.size() < 8 + 25 + 12) fail(path, ": not a PNG file (only ", bytes.size(), " bytes)");
  Ctx ctx(spng_ctx_new(0));
  if (!ctx) fail(path, ": cannot create a PNG decoder (out of memory)");
  int rc = spng_set_image_limits(ctx.get(), kMaxSide, kMaxSide);
  if (!rc) rc = spng_set_chunk_limits(ctx.get(), kMaxChunkBytes, kMaxChunkBytes);
  if (!rc) rc = spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
  spng_ihdr ihdr{};
  if (!rc) rc = spng_get_ihdr(ctx.get(), &ihdr);
  if (rc) fail(path, ": invalid PNG: ", spng_strerror(rc));
  size_t out_size = 0;
  rc = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &out_size);
  if (rc) fail(path, ": invalid PNG: ", spng_strerror(rc));
  const size_t want = static_cast<size_t>(ihdr.width) * ihdr.height * 3;
  if (out_size != want || out_size > kMaxDecodedBytes)
    fail(path, ": PNG of ", ihdr.width, "x", ihdr.height, " pixels is too large to decode");
  Image img(static_cast<int>(ihdr.width), static_cast<int>(ihdr.height));
  // SPNG_FMT_RGB8 converts every colour type and bit depth (grey, palette, 16-bit,
  // alpha is dropped); no gamma correction, the samples are taken as they are.
  rc = spng_decode_image(ctx.get(), img.rgb.data(), img.rgb.size(), SPNG_FMT_RGB8, 0);
  if (rc) fail(path, ": corrupt or truncated PNG: ", spng_strerror(rc));
  // libspng stops reading once it has every scanline, so the rest of the last IDAT
  // chunk (its CRC included) would go unchecked; reading the chunks after the image
  // verifies them up to IEND.
  rc = spng_decode_chunks(ctx.get());
  if (rc) fail(path, ": corrupt or truncated PNG: ", spng_strerror(rc));
  // libspng accepts a file cut inside the IEND chunk. A complete PNG ends with the
  // 12-byte IEND chunk (the spec allows nothing after it), so require exactly that.
  if (std::memcmp(bytes.data() + bytes.size() - sizeof kIend, kIend, sizeof kIend) != 0)
    fail(path, ": truncated PNG, or data after its end (the file does not end with an IEND chunk)");
  return img;
}

Image upscale(const Image& img, int k) {
  Image big(img.width * k, img.height * k);
  for (int y = 0; y < big.height; ++y)
    for (int x = 0; x < big.width; ++x) std::copy(img.at(x / k, y / k), img.at(x / k, y / k) + 3, big.at(x, y));
  return big;
}

Image image_grid(const std::vector<std::vector<Image>>& rows, int scale, int pad, uint8_t background) {
  if (rows.empty() || rows[0].empty()) return {};
  const int w = rows[0][0].width * scale, h = rows[0][0].height * scale;
  size_t cols = 0;
  for (const auto& r : rows) cols = std::max(cols, r.size());
  Image grid(static_cast<int>(cols) * (w + pad) + pad, static_cast<int>(rows.size()) * (h + pad) + pad);
  std::fill(grid.rgb.begin(), grid.rgb.end(), background);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const Image big = upscale(rows[r][c], scale);
      const int x0 = pad + static_cast<int>(c) * (w + pad), y0 = pad + static_cast<int>(r) * (h + pad);
      for (int y = 0; y < h && y < big.height; ++y)
        for (int x = 0; x < w && x < big.width; ++x) std::copy(big.at(x, y), big.at(x, y) + 3, grid.at(x0 + x, y0 + y));
    }
  return grid;
}

double psnr(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height)
    fail("psnr: image sizes differ (", a.width, "x", a.height, " vs ", b.width, "x", b.height, ")");
  if (a.rgb.size() != b.rgb.size() || a.rgb.size() != static_cast<size_t>(a.width) * a.height * 3)
    fail("psnr: image buffer size does not match its ", a.width, "x", a.height, " RGB size");
  if (a.rgb.empty()) fail("psnr: empty images");
  uint64_t sse = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const int d = static_cast<int>(a.rgb[i]) - static_cast<int>(b.rgb[i]);
    sse += static_cast<uint64_t>(d * d);
  }
  if (sse == 0) return std::numeric_limits<double>::infinity();
  const double mse = static_cast<double>(sse) / static_cast<double>(a.rgb.size());
  return 10.0 * std::log10(255.0 * 255.0 / mse);
}

}  // namespace mot::data
