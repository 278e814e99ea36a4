// Image autoencoder (data/autoencoder/): save/load round trip and the load's refusals
// (each one mot::Error line naming the file), shape checks, the conversions between
// bytes and floats, encode/decode agreeing with the training pass, deterministic
// training, and training that learns the built-in scenes. Gradients are checked
// against PyTorch by tests/reference/test_autoencoder_parity.py (the code is float32,
// so finite differences here would say little).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/autoencoder/conv_autoencoder.hpp"
#include "mot/data/media/image.hpp"
#include "mot/data/synth/scene.hpp"
#include "mot/io/safetensors.hpp"
#include "test_files.hpp"

using mot::Rng;
using mot::data::AutoencoderShape;
using mot::data::AutoencoderTraining;
using mot::data::ConvAutoencoder;
using mot::data::Image;

namespace {

class AutoencoderTest : public mot::test::TempDirTest {};

AutoencoderShape small_shape() {
  AutoencoderShape s;
  s.image_size = 12;
  s.latent_channels = 3;
  s.width1 = 5;
  s.width2 = 7;
  return s;
}

std::vector<float> random_pixels(uint64_t seed, size_t count) {
  Rng rng(seed);
  std::vector<float> v(count);
  for (float& x : v) x = static_cast<float>(2 * rng.uniform() - 1);
  return v;
}

std::vector<Image> scenes(uint64_t seed, int n, int size) {
  Rng rng(seed);
  std::vector<Image> v;
  for (int i = 0; i < n; ++i) v.push_back(mot::data::render_scene(mot::data::random_scene(rng, 1), size));
  return v;
}

// The error message of f(), or "" if it did not throw mot::Error.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const mot::Error& e) {
    return e.what();
  }
  return "";
}

// Every parameter of a model as a safetensors tensor list (shapes as the model's).
std::vector<mot::io::TensorToWrite> tensors_of(const ConvAutoencoder& ae) {
  std::vector<mot::io::TensorToWrite> t;
  for (const auto& p : ae.params()) t.push_back({p.name, mot::io::DType::F32, p.shape, p.values.data()});
  return t;
}

std::map<std::string, std::string> metadata_of(const AutoencoderShape& s) {
  return {{"format", "mot-autoencoder"},
          {"image_size", std::to_string(s.image_size)},
          {"latent_channels", std::to_string(s.latent_channels)},
          {"width1", std::to_string(s.width1)},
          {"width2", std::to_string(s.width2)}};
}

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Mean squared reconstruction error (no latent noise) over images.
double reconstruction_mse(const ConvAutoencoder& ae, const std::vector<Image>& images) {
  const std::vector<float> z = encode_images(ae, images);
  const int S = ae.shape().image_size;
  const size_t in = 3 * static_cast<size_t>(S) * S;
  std::vector<float> x(in), y(images.size() * in);
  ae.decode(z.data(), static_cast<int64_t>(images.size()), y.data());
  double s = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    mot::data::image_to_floats(images[i], S, x.data());
    for (size_t k = 0; k < in; ++k) s += (y[i * in + k] - x[k]) * double(y[i * in + k] - x[k]);
  }
  return s / static_cast<double>(images.size() * in);
}

}  // namespace

TEST(AutoencoderShapeTest, ChecksRanges) {
  AutoencoderShape s;
  EXPECT_NO_THROW(s.check());
  EXPECT_EQ(s.grid(), 6);
  EXPECT_EQ(s.latent_values(), 6 * 6 * 4);
  for (int bad : {0, 10, 516, -4}) {
    AutoencoderShape b;
    b.image_size = bad;
    EXPECT_THROW(b.check(), mot::Error) << bad;
  }
  AutoencoderShape c;
  c.latent_channels = 0;
  EXPECT_THROW(c.check(), mot::Error);
  c.latent_channels = 65;
  EXPECT_THROW(c.check(), mot::Error);
  AutoencoderShape w;
  w.width2 = 0;
  EXPECT_THROW(w.check(), mot::Error);
  w.width2 = 513;
  EXPECT_THROW(w.check(), mot::Error);
  EXPECT_THROW(ConvAutoencoder(w, 1), mot::Error);
}

TEST(AutoencoderInit, PyTorchDefaultBoundsAndFileOrder) {
  const ConvAutoencoder ae(AutoencoderShape{}, 7);
  const std::vector<std::string> layers = {"encoder.conv1", "encoder.conv2", "encoder.conv3",
                                           "encoder.conv4", "decoder.conv1", "decoder.conv2",
                                           "decoder.conv3", "decoder.conv4", "decoder.conv5"};
  const auto p = ae.params();
  ASSERT_EQ(p.size(), 2 * layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    EXPECT_EQ(p[2 * l].name, layers[l] + ".weight");
    EXPECT_EQ(p[2 * l + 1].name, layers[l] + ".bias");
    const auto& w = p[2 * l];
    ASSERT_EQ(w.shape.size(), 4u);
    const double bound = 1.0 / std::sqrt(static_cast<double>(w.shape[1] * w.shape[2] * w.shape[3]));
    float lo = 0, hi = 0;
    for (const auto& t : {p[2 * l], p[2 * l + 1]})
      for (float v : t.values) lo = std::min(lo, v), hi = std::max(hi, v);
    EXPECT_LE(hi, bound);
    EXPECT_GE(lo, -bound);
    EXPECT_GT(hi - lo, bound) << layers[l];  // spread over the range, not all zero
  }
  EXPECT_EQ(p[6].shape, (std::vector<int64_t>{4, 32, 1, 1}));  // the 1x1
  EXPECT_EQ(p[16].shape, (std::vector<int64_t>{3, 16, 3, 3}));
}

TEST(AutoencoderConversions, BytesAndFloats) {
  Image img(4, 4);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>(i * 5);
  std::vector<float> x(48);
  mot::data::image_to_floats(img, 4, x.data());
  EXPECT_FLOAT_EQ(x[0], -1.0f);
  EXPECT_FLOAT_EQ(x[1], 5 / 127.5f - 1);
  EXPECT_EQ(mot::data::floats_to_image(x.data(), 4).rgb, img.rgb);
  x[0] = 7.0f;
  x[1] = -3.0f;
  x[2] = 0.0f;  // (0 + 1) · 127.5 = 127.5 rounds to 128
  const Image back = mot::data::floats_to_image(x.data(), 4);
  EXPECT_EQ(back.rgb[0], 255);
  EXPECT_EQ(back.rgb[1], 0);
  EXPECT_EQ(back.rgb[2], 128);
  EXPECT_THROW(mot::data::image_to_floats(Image(4, 5), 4, x.data()), mot::Error);
}

TEST(AutoencoderForward, EncodeDecodeMatchTheTrainingPass) {
  ConvAutoencoder ae(small_shape(), 3);
  const int n = 5, S = 12;
  const size_t in = 3 * S * S, nl = static_cast<size_t>(ae.shape().latent_values());
  const std::vector<float> x = random_pixels(1, n * in);
  const std::vector<float> zero(n * nl, 0.0f);
  const double loss = ae.loss_and_grad(x.data(), n, zero.data(), 0.1f);
  EXPECT_TRUE(std::isfinite(loss));
  std::vector<float> z(n * nl), y(n * in);
  ae.encode(x.data(), n, z.data());
  ae.decode(z.data(), n, y.data());
  EXPECT_TRUE(same_bytes(z, ae.last_latents()));
  EXPECT_TRUE(same_bytes(y, ae.last_reconstruction()));
  for (float v : z) EXPECT_TRUE(v > -1 && v < 1);
  double mse = 0;
  for (size_t k = 0; k < y.size(); ++k) mse += (y[k] - x[k]) * double(y[k] - x[k]);
  EXPECT_NEAR(loss, mse / y.size(), 1e-6 * loss);
  // One image at a time gives the same latents (to rounding: GEMM shapes differ).
  std::vector<float> z1(nl);
  for (int i = 0; i < n; ++i) {
    ae.encode(x.data() + i * in, 1, z1.data());
    for (size_t k = 0; k < nl; ++k) EXPECT_NEAR(z1[k], z[i * nl + k], 1e-5f);
  }
}

TEST_F(AutoencoderTest, SaveLoadRoundTrip) {
  const ConvAutoencoder ae(small_shape(), 11);
  const std::string p = path("ae.safetensors");
  ae.save(p);
  const ConvAutoencoder back = ConvAutoencoder::load(p);
  EXPECT_EQ(back.shape().image_size, 12);
  EXPECT_EQ(back.shape().latent_channels, 3);
  EXPECT_EQ(back.shape().width1, 5);
  EXPECT_EQ(back.shape().width2, 7);
  const auto a = ae.flat_params(), b = back.flat_params();
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  const int n = 3;
  const std::vector<float> x = random_pixels(2, n * 3 * 12 * 12);
  const size_t nl = static_cast<size_t>(ae.shape().latent_values());
  std::vector<float> za(n * nl), zb(n * nl), ya(x.size()), yb(x.size());
  ae.encode(x.data(), n, za.data());
  back.encode(x.data(), n, zb.data());
  ae.decode(za.data(), n, ya.data());
  back.decode(za.data(), n, yb.data());
  EXPECT_TRUE(same_bytes(za, zb));
  EXPECT_TRUE(same_bytes(ya, yb));
}

TEST_F(AutoencoderTest, TruncatedFileNamesThePath) {
  const std::string p = path("ae.safetensors");
  ConvAutoencoder(small_shape(), 1).save(p);
  mot::test::Bytes b = mot::test::slurp(p);
  for (size_t keep : {b.size() - 4, b.size() / 2, size_t{12}, size_t{3}}) {
    mot::test::spit(p, mot::test::Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(keep)));
    const std::string e = error_of([&] { ConvAutoencoder::load(p); });
    EXPECT_NE(e.find(p), std::string::npos) << keep << " bytes: '" << e << "'";
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  const std::string missing = path("nope.safetensors");
  EXPECT_NE(error_of([&] { ConvAutoencoder::load(missing); }).find(missing), std::string::npos);
}

TEST_F(AutoencoderTest, BadTensorsAndMetadataNameThePath) {
  const AutoencoderShape s = small_shape();
  const ConvAutoencoder ae(s, 1);
  const std::string p = path("bad.safetensors");
  const auto expect_refused = [&](const std::vector<mot::io::TensorToWrite>& t,
                                  const std::map<std::string, std::string>& meta, const std::string& what,
                                  const std::string& mentions) {
    mot::io::write_safetensors(p, t, meta);
    const std::string e = error_of([&] { ConvAutoencoder::load(p); });
    EXPECT_NE(e.find(p), std::string::npos) << what << ": '" << e << "'";
    EXPECT_NE(e.find(mentions), std::string::npos) << what << ": '" << e << "'";
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  };
  {  // same values, another shape
    auto t = tensors_of(ae);
    t[2].shape = {7, 5, 1, 9};
    expect_refused(t, metadata_of(s), "wrong shape", "encoder.conv2.weight");
  }
  {  // metadata that does not match the tensors
    auto m = metadata_of(s);
    m["width2"] = "8";
    expect_refused(tensors_of(ae), m, "wrong width", "encoder.conv2.weight");
  }
  {
    auto t = tensors_of(ae);
    t.erase(t.begin() + 9);
    expect_refused(t, metadata_of(s), "missing tensor", "decoder.conv1.bias");
  }
  {
    auto t = tensors_of(ae);
    t.push_back({"extra", mot::io::DType::F32, {1}, t[0].data});
    expect_refused(t, metadata_of(s), "unknown tensor", "extra");
  }
  {
    auto t = tensors_of(ae);
    std::vector<uint16_t> bf(3, 0);
    t[17] = {"decoder.conv5.bias", mot::io::DType::BF16, {3}, bf.data()};
    expect_refused(t, metadata_of(s), "wrong dtype", "BF16");
  }
  {
    auto t = tensors_of(ae);
    std::vector<float> w(ae.params()[4].values.begin(), ae.params()[4].values.end());
    w[5] = NAN;
    t[4].data = w.data();
    expect_refused(t, metadata_of(s), "NaN", "encoder.conv3.weight");
    w[5] = INFINITY;
    expect_refused(t, metadata_of(s), "inf", "not finite");
  }
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"format", "mot-vq"}, {"image_size", "10"}, {"image_size", "12px"}, {"latent_channels", ""},
           {"width1", "0"}, {"width1", "99999999999"}}) {
    auto m = metadata_of(s);
    m[key] = value;
    expect_refused(tensors_of(ae), m, key + "=" + value, key);
  }
  for (const std::string key : {"format", "width2"}) {
    auto m = metadata_of(s);
    m.erase(key);
    expect_refused(tensors_of(ae), m, "no " + key, key);
  }
}

TEST(AutoencoderTraining, RefusesBadInput) {
  const AutoencoderShape s = small_shape();
  AutoencoderTraining t;
  t.steps = 2;
  t.batch = 2;
  EXPECT_THROW(train_autoencoder({}, s, t, {}), mot::Error);
  EXPECT_THROW(train_autoencoder({Image(12, 12), Image(16, 16)}, s, t, {}), mot::Error);
  t.steps = 0;
  EXPECT_THROW(train_autoencoder({Image(12, 12)}, s, t, {}), mot::Error);
  t.steps = 2;
  t.lr = 0;
  EXPECT_THROW(train_autoencoder({Image(12, 12)}, s, t, {}), mot::Error);
}

TEST(AutoencoderTraining, DeterministicForASeed) {
  const AutoencoderShape s = small_shape();
  const std::vector<Image> images = scenes(4, 50, s.image_size);
  AutoencoderTraining t;
  t.steps = 120;
  t.batch = 8;
  t.seed = 5;
  std::vector<int> calls;
  const auto run = [&](uint64_t seed) {
    t.seed = seed;
    calls.clear();
    const ConvAutoencoder ae = train_autoencoder(images, s, t, [&](int step, double loss) {
      calls.push_back(step);
      EXPECT_TRUE(std::isfinite(loss));
    });
    return std::vector<float>(ae.flat_params().begin(), ae.flat_params().end());
  };
  const std::vector<float> a = run(5), b = run(5);
  EXPECT_EQ(calls, (std::vector<int>{100, 120}));
  EXPECT_TRUE(same_bytes(a, b));
  EXPECT_FALSE(same_bytes(a, run(6)));
  const ConvAutoencoder init(s, 5);  // training moved the weights
  EXPECT_FALSE(same_bytes(a, std::vector<float>(init.flat_params().begin(), init.flat_params().end())));
}

// A short training on one-object scenes: the held-out reconstruction error falls far
// below the untrained model's and clearly below the best constant image's (the per-pixel
// mean of the training images, which already gets the black background right; 300
// steps get to about half of it, 2000 steps to a small fraction).
TEST(AutoencoderTraining, LearnsTheScenes) {
  const auto t0 = std::chrono::steady_clock::now();
  const AutoencoderShape s;  // 24 px, the default
  const std::vector<Image> train = scenes(21, 2000, s.image_size), held = scenes(22, 200, s.image_size);
  AutoencoderTraining t;
  t.steps = 300;
  t.batch = 32;
  t.seed = 3;
  const double before = reconstruction_mse(ConvAutoencoder(s, t.seed), held);
  double first = 0, last = 0;
  const ConvAutoencoder ae = train_autoencoder(train, s, t, [&](int step, double loss) {
    if (step == 100) first = loss;
    last = loss;
  });
  const double after = reconstruction_mse(ae, held);
  const size_t in = 3 * static_cast<size_t>(s.image_size) * s.image_size;
  std::vector<double> mean(in, 0.0);
  std::vector<float> x(in);
  for (const Image& im : train) {
    mot::data::image_to_floats(im, s.image_size, x.data());
    for (size_t k = 0; k < in; ++k) mean[k] += x[k] / train.size();
  }
  double constant = 0;
  for (const Image& im : held) {
    mot::data::image_to_floats(im, s.image_size, x.data());
    for (size_t k = 0; k < in; ++k) constant += (x[k] - mean[k]) * (x[k] - mean[k]);
  }
  constant /= static_cast<double>(held.size() * in);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  held-out MSE: untrained %.4f, mean image %.4f, trained %.4f; training loss %.4f -> %.4f (%.1f s)\n",
              before, constant, after, first, last, secs);
  EXPECT_LT(after, 0.1 * before);
  EXPECT_LT(after, 0.75 * constant);
  EXPECT_LT(last, first);
}
