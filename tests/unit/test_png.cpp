// PNG input/output through libspng: exact round trips (odd sizes, 1x1), conversion of
// other colour types to RGB, and every truncation / single-byte corruption of a file
// turning into a mot::Error that names the path (never a crash or a wrong image).
#include <gtest/gtest.h>

#include "test_files.hpp"
#include <spng.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/media/image.hpp"

namespace fs = std::filesystem;
using mot::data::Image;
using mot::data::psnr;
using mot::data::read_png;
using mot::data::write_png;
using mot::test::Bytes;
using mot::test::slurp;
using mot::test::spit;

namespace {

class PngTest : public mot::test::TempDirTest {};

Image random_image(int w, int h, uint64_t seed) {
  mot::Rng rng(seed);
  Image img(w, h);
  for (auto& v : img.rgb) v = static_cast<uint8_t>(rng.next() >> 56);
  return img;
}

// Encodes raw samples in any PNG colour type / bit depth with libspng directly.
void write_raw_png(const std::string& p, uint32_t w, uint32_t h, uint8_t color_type, uint8_t bit_depth,
                   const Bytes& raw, const spng_plte* plte = nullptr) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  ASSERT_NE(ctx, nullptr);
  spng_ihdr ihdr{};
  ihdr.width = w;
  ihdr.height = h;
  ihdr.bit_depth = bit_depth;
  ihdr.color_type = color_type;
  ASSERT_EQ(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
  ASSERT_EQ(spng_set_ihdr(ctx, &ihdr), 0);
  if (plte) {
    ASSERT_EQ(spng_set_plte(ctx, const_cast<spng_plte*>(plte)), 0);
  }
  ASSERT_EQ(spng_encode_image(ctx, raw.data(), raw.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
  size_t len = 0;
  int err = 0;
  void* buf = spng_get_png_buffer(ctx, &len, &err);
  ASSERT_EQ(err, 0);
  ASSERT_NE(buf, nullptr);
  spit(p, Bytes(static_cast<uint8_t*>(buf), static_cast<uint8_t*>(buf) + len));
  std::free(buf);
  spng_ctx_free(ctx);
}

// The call throws mot::Error whose message names `p`.
template <class F>
void expect_error_naming(const std::string& p, F&& f, const std::string& context) {
  try {
    f();
    ADD_FAILURE() << context << ": no error";
  } catch (const mot::Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << context << ": " << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << context << ": " << e.what();
  }
}

TEST_F(PngTest, RoundTripIsExactForOddSizes) {
  const std::pair<int, int> sizes[] = {{1, 1}, {1, 7}, {7, 1}, {3, 5}, {17, 9}, {33, 31}, {64, 48}, {257, 3}};
  uint64_t seed = 1;
  for (auto [w, h] : sizes) {
    const Image img = random_image(w, h, seed++);
    const std::string p = path("img.png");
    write_png(p, img);
    const Image back = read_png(p);
    EXPECT_EQ(back.width, w);
    EXPECT_EQ(back.height, h);
    EXPECT_EQ(back.rgb, img.rgb) << w << "x" << h;
    EXPECT_TRUE(std::isinf(psnr(img, back)));
  }
  // No temp file is left behind next to the output.
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST_F(PngTest, WriteReplacesAnExistingFile) {
  const std::string p = path("a.png");
  write_png(p, random_image(5, 5, 1));
  const Image second = random_image(9, 2, 2);
  write_png(p, second);
  EXPECT_EQ(read_png(p).rgb, second.rgb);
}

TEST_F(PngTest, WriteRejectsInconsistentImages) {
  const std::string p = path("bad.png");
  Image empty;
  EXPECT_THROW(write_png(p, empty), mot::Error);
  Image wrong(4, 4);
  wrong.rgb.resize(10);
  EXPECT_THROW(write_png(p, wrong), mot::Error);
  EXPECT_FALSE(fs::exists(p));
  EXPECT_THROW(write_png(path("no/such/dir/x.png"), random_image(2, 2, 1)), mot::Error);
}

TEST_F(PngTest, MissingAndNonPngFilesThrow) {
  expect_error_naming(path("missing.png"), [&] { read_png(path("missing.png")); }, "missing");
  const std::string empty = path("empty.png");
  spit(empty, {});
  expect_error_naming(empty, [&] { read_png(empty); }, "empty");
  const std::string text = path("text.png");
  const std::string junk(200, 'x');
  spit(text, Bytes(junk.begin(), junk.end()));
  expect_error_naming(text, [&] { read_png(text); }, "text");
}

TEST_F(PngTest, EveryTruncationThrows) {
  const std::string good = path("good.png"), cut = path("cut.png");
  write_png(good, random_image(13, 11, 7));
  const Bytes bytes = slurp(good);
  ASSERT_GT(bytes.size(), 100u);
  for (size_t len = 0; len < bytes.size(); ++len) {
    spit(cut, Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len)));
    expect_error_naming(cut, [&] { read_png(cut); }, mot::cat("truncated to ", len, " of ", bytes.size()));
  }
}

TEST_F(PngTest, EverySingleByteCorruptionThrows) {
  // Our files hold only critical chunks (IHDR, IDAT, IEND), each CRC-checked, so any
  // flipped byte must be detected.
  const std::string good = path("good.png"), bad = path("bad.png");
  write_png(good, random_image(6, 5, 9));
  const Bytes bytes = slurp(good);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      Bytes b = bytes;
      b[i] ^= mask;
      spit(bad, b);
      expect_error_naming(bad, [&] { read_png(bad); }, mot::cat("byte ", i, " ^ ", int(mask)));
    }
  }
}

TEST_F(PngTest, GrayscaleIsExpandedToRgb) {
  const uint32_t w = 5, h = 3;
  Bytes gray(w * h);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i * 17);
  const std::string p = path("gray.png");
  write_raw_png(p, w, h, SPNG_COLOR_TYPE_GRAYSCALE, 8, gray);
  const Image img = read_png(p);
  ASSERT_EQ(img.width, 5);
  ASSERT_EQ(img.height, 3);
  for (size_t i = 0; i < gray.size(); ++i)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(img.rgb[i * 3 + c], gray[i]) << i;
}

TEST_F(PngTest, LowBitDepthGrayscaleIsScaledToFullRange) {
  // 1-bit grey: one row of 8 pixels packed in a byte, 0 -> 0 and 1 -> 255.
  const std::string p = path("gray1.png");
  write_raw_png(p, 8, 1, SPNG_COLOR_TYPE_GRAYSCALE, 1, Bytes{0b10110001});
  const Image img = read_png(p);
  const int bits[8] = {1, 0, 1, 1, 0, 0, 0, 1};
  for (int x = 0; x < 8; ++x)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(img.at(x, 0)[c], bits[x] ? 255 : 0) << x;
}

TEST_F(PngTest, RgbaDropsAlpha) {
  const uint32_t w = 4, h = 4;
  Bytes rgba(w * h * 4);
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = static_cast<uint8_t>(i * 7 + 3);
  const std::string p = path("rgba.png");
  write_raw_png(p, w, h, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, rgba);
  const Image img = read_png(p);
  ASSERT_EQ(img.rgb.size(), w * h * 3);
  for (size_t px = 0; px < w * h; ++px)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(img.rgb[px * 3 + c], rgba[px * 4 + c]) << px;
}

TEST_F(PngTest, GrayAlphaAndSixteenBitAndPaletteConvert) {
  {  // grey + alpha, 8-bit
    const std::string p = path("ga.png");
    write_raw_png(p, 2, 1, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, Bytes{10, 200, 250, 0});
    const Image img = read_png(p);
    EXPECT_EQ(img.rgb, (Bytes{10, 10, 10, 250, 250, 250}));
  }
  {  // 16-bit RGB (libspng takes host-endian samples): v * 257 reads back as v
    const std::string p = path("rgb16.png");
    const uint16_t samples[3] = {0x1212, 0xABAB, 0xFFFF};
    Bytes raw(6);
    std::memcpy(raw.data(), samples, 6);
    write_raw_png(p, 1, 1, SPNG_COLOR_TYPE_TRUECOLOR, 16, raw);
    const Image img = read_png(p);
    EXPECT_EQ(img.rgb, (Bytes{0x12, 0xAB, 0xFF}));
  }
  {  // indexed colour
    spng_plte plte{};
    plte.n_entries = 2;
    plte.entries[0] = {1, 2, 3, 255};
    plte.entries[1] = {200, 100, 50, 255};
    const std::string p = path("pal.png");
    write_raw_png(p, 3, 1, SPNG_COLOR_TYPE_INDEXED, 8, Bytes{1, 0, 1}, &plte);
    const Image img = read_png(p);
    EXPECT_EQ(img.rgb, (Bytes{200, 100, 50, 1, 2, 3, 200, 100, 50}));
  }
}

TEST(Psnr, KnownValueAndSizeMismatch) {
  Image a(2, 2), b(2, 2);
  b.rgb[0] = 255;  // one sample off by 255 among 12: MSE = 255^2 / 12
  EXPECT_NEAR(psnr(a, b), 10.0 * std::log10(12.0), 1e-12);
  EXPECT_TRUE(std::isinf(psnr(a, a)));
  EXPECT_THROW(psnr(a, Image(2, 3)), mot::Error);
}

}  // namespace
