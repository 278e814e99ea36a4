#include "mot/data/autoencoder/conv_autoencoder.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <numbers>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/autoencoder/conv_ops.hpp"
#include "mot/io/safetensors.hpp"

namespace mot::data {
namespace {

constexpr const char* kFormat = "mot-autoencoder";
constexpr int kLayers = 9;    // encoder conv1..conv4, decoder conv1..conv5
constexpr int kEncoder = 4;   // the first kEncoder layers are the encoder
constexpr int kLatent = 3;    // the layer whose output is the latent image
constexpr int kOut = 8;       // the layer whose output is the reconstruction
constexpr int64_t kInferChunk = 64;  // images per forward pass in encode()/decode() (bounds the workspace)

enum class Act { none, silu, tanh };

struct LayerDef {
  const char* name;
  int cin, cout, k, stride;
  bool upsample_before;  // the input is the previous output enlarged x2
  Act act;
  int in_side;           // spatial side of the layer's input (after the upsample)
};

std::array<LayerDef, kLayers> layer_defs(const AutoencoderShape& s) {
  const int S = s.image_size, G = s.grid(), C = s.latent_channels, w1 = s.width1, w2 = s.width2;
  return {{
      {"encoder.conv1", 3, w1, 3, 1, false, Act::silu, S},
      {"encoder.conv2", w1, w2, 3, 2, false, Act::silu, S},
      {"encoder.conv3", w2, w2, 3, 2, false, Act::silu, S / 2},
      {"encoder.conv4", w2, C, 1, 1, false, Act::tanh, G},
      {"decoder.conv1", C, w2, 3, 1, false, Act::silu, G},
      {"decoder.conv2", w2, w2, 3, 1, false, Act::silu, G},
      {"decoder.conv3", w2, w1, 3, 1, true, Act::silu, 2 * G},
      {"decoder.conv4", w1, w1, 3, 1, true, Act::silu, 4 * G},
      {"decoder.conv5", w1, 3, 3, 1, false, Act::none, S},
  }};
}

// Where each layer's weight and bias start in the flat parameter array.
struct Offsets {
  std::array<int64_t, kLayers> weight{}, bias{};
  int64_t total = 0;
};

Offsets param_offsets(const AutoencoderShape& s) {
  Offsets o;
  const auto defs = layer_defs(s);
  for (int l = 0; l < kLayers; ++l) {
    o.weight[l] = o.total;
    o.total += static_cast<int64_t>(defs[l].cout) * defs[l].cin * defs[l].k * defs[l].k;
    o.bias[l] = o.total;
    o.total += defs[l].cout;
  }
  return o;
}

// Every parameter tensor's name, shape and place in the flat array, in file order.
struct Slot {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset, size;
};

std::vector<Slot> param_slots(const AutoencoderShape& s) {
  const auto defs = layer_defs(s);
  const Offsets o = param_offsets(s);
  std::vector<Slot> v;
  for (int l = 0; l < kLayers; ++l) {
    const LayerDef& d = defs[l];
    v.push_back({std::string(d.name) + ".weight", {d.cout, d.cin, d.k, d.k}, static_cast<size_t>(o.weight[l]),
                 static_cast<size_t>(o.bias[l] - o.weight[l])});
    v.push_back({std::string(d.name) + ".bias", {d.cout}, static_cast<size_t>(o.bias[l]), static_cast<size_t>(d.cout)});
  }
  return v;
}

template <class T>
std::vector<NamedTensor<T>> views(const AutoencoderShape& s, std::span<T> flat) {
  std::vector<NamedTensor<T>> v;
  for (Slot& p : param_slots(s)) v.push_back({std::move(p.name), std::move(p.shape), flat.subspan(p.offset, p.size)});
  return v;
}

void check_shape(const AutoencoderShape& s, const std::string& origin) {
  if (s.image_size < 4 || s.image_size > 512 || s.image_size % 4 != 0)
    fail(origin, ": image_size ", s.image_size, " is not a multiple of 4 in [4, 512]");
  if (s.latent_channels < 1 || s.latent_channels > 64)
    fail(origin, ": latent_channels ", s.latent_channels, " is not in [1, 64]");
  if (s.width1 < 1 || s.width1 > 512) fail(origin, ": width1 ", s.width1, " is not in [1, 512]");
  if (s.width2 < 1 || s.width2 > 512) fail(origin, ": width2 ", s.width2, " is not in [1, 512]");
}

std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

int parse_int(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) fail(path, ": not a mot autoencoder (metadata has no '", key, "')");
  const std::string& s = it->second;
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    fail(path, ": metadata '", key, "' is not an integer ('", s, "')");
  return v;
}

}  // namespace

int64_t AutoencoderShape::latent_values() const {
  return static_cast<int64_t>(grid()) * grid() * latent_channels;
}

void AutoencoderShape::check() const { check_shape(*this, "autoencoder"); }

// Every buffer of one forward (and, when training, backward) pass over n images.
// Activations are [C][N][H][W] (conv_ops.hpp). Vectors only grow, so a training step
// on no more images than before allocates nothing.
struct ConvAutoencoder::Workspace {
  explicit Workspace(bool training_) : training(training_) {}

  bool training;
  int64_t n = 0;
  bool has_result = false;  // loss_and_grad ran on this workspace
  std::array<LayerDef, kLayers> defs{};
  std::array<conv::ConvGeom, kLayers> geom{};
  std::vector<float> x;                               // the input images
  std::array<std::vector<float>, kLayers> cols, z, a;  // im2col (inference: cols[0] only), pre- and post-activation
  std::vector<float> noisy;                           // decoder input: latents (+ σ·ξ when training)
  std::array<std::vector<float>, kLayers> up;         // enlarged inputs of the upsampling layers
  std::vector<float> g0, g1, scratch;                 // backward: gradients, conv scratch
  std::vector<double> partial;                        // per-plane loss sums

  static void grow(std::vector<float>& v, int64_t size) {
    if (static_cast<int64_t>(v.size()) < size) v.resize(static_cast<size_t>(size));
  }

  void prepare(const AutoencoderShape& s, int64_t n_) {
    n = n_;
    defs = layer_defs(s);
    int64_t grad_max = 0, scratch_max = 0;
    grow(x, 3 * n * s.image_size * s.image_size);
    for (int l = 0; l < kLayers; ++l) {
      const LayerDef& d = defs[l];
      conv::ConvGeom& g = geom[l];
      g = conv::ConvGeom{d.cin, d.cout, d.k, d.stride, static_cast<int>(n), d.in_side, d.in_side};
      grow(cols[training ? l : 0], g.col_values());
      grow(z[l], g.out_values());
      if (d.act != Act::none) grow(a[l], g.out_values());
      if (d.upsample_before) grow(up[l], g.in_values());
      grad_max = std::max({grad_max, g.in_values(), g.out_values()});
      scratch_max = std::max(scratch_max, conv::backward_scratch_values(g));
    }
    grow(noisy, geom[kEncoder].in_values());
    if (training) {
      grow(g0, grad_max);
      grow(g1, grad_max);
      grow(scratch, scratch_max);
      partial.resize(std::max(partial.size(), static_cast<size_t>(3 * n)));
    }
  }

  const float* input(int l) const {
    if (l == 0) return x.data();
    if (l == kEncoder) return noisy.data();
    if (defs[l].upsample_before) return up[l].data();
    return output(l - 1);
  }
  const float* output(int l) const { return defs[l].act == Act::none ? z[l].data() : a[l].data(); }
  float* cols_of(int l) { return cols[training ? l : 0].data(); }

  void forward(const float* params, const Offsets& o, int l0, int l1) {
    for (int l = l0; l < l1; ++l) {
      const LayerDef& d = defs[l];
      const conv::ConvGeom& g = geom[l];
      if (d.upsample_before)
        conv::upsample2_forward(static_cast<int64_t>(d.cin) * n, d.in_side / 2, d.in_side / 2, output(l - 1),
                                up[l].data());
      const float* c = input(l);
      if (!g.direct()) {
        conv::im2col(g, c, cols_of(l));
        c = cols_of(l);
      }
      conv::conv_forward(g, c, params + o.weight[l], params + o.bias[l], z[l].data());
      if (d.act == Act::silu) conv::silu_forward(g.out_values(), z[l].data(), a[l].data());
      if (d.act == Act::tanh) conv::tanh_forward(g.out_values(), z[l].data(), a[l].data());
    }
  }

  // g0 holds d loss / d output of the last layer; fills grads for every layer.
  void backward(const float* params, float* grads, const Offsets& o) {
    float* g = g0.data();      // gradient of the current layer's output
    float* other = g1.data();  // gradient of its input
    for (int l = kOut; l >= 0; --l) {
      const LayerDef& d = defs[l];
      const conv::ConvGeom& gm = geom[l];
      if (d.act == Act::silu) conv::silu_backward(gm.out_values(), z[l].data(), g, g);
      if (d.act == Act::tanh) conv::tanh_backward(gm.out_values(), a[l].data(), g, g);
      const float* c = gm.direct() ? input(l) : cols_of(l);
      conv::conv_backward(gm, c, params + o.weight[l], g, grads + o.weight[l], grads + o.bias[l],
                          l == 0 ? nullptr : other, scratch.data());
      if (l == 0) break;
      std::swap(g, other);  // g: the input's gradient; other is free
      if (d.upsample_before) {
        conv::upsample2_backward(static_cast<int64_t>(d.cin) * n, d.in_side / 2, d.in_side / 2, g, other);
        std::swap(g, other);
      }
      // The decoder's input is latents + σ·ξ: its gradient is the latents' gradient.
    }
  }
};

namespace {

// n images HWC (S·S·3 per image) -> [3][n][S][S], and the reverse for c channels.
void hwc_to_cnhw(const float* src, int64_t n, int side, int c, float* dst) {
  const int64_t plane = static_cast<int64_t>(side) * side;
#pragma omp parallel for schedule(static) if (n * plane * c >= (1 << 15))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < plane; ++p)
      for (int ch = 0; ch < c; ++ch) dst[(ch * n + i) * plane + p] = src[(i * plane + p) * c + ch];
}

void cnhw_to_hwc(const float* src, int64_t n, int side, int c, float* dst) {
  const int64_t plane = static_cast<int64_t>(side) * side;
#pragma omp parallel for schedule(static) if (n * plane * c >= (1 << 15))
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < plane; ++p)
      for (int ch = 0; ch < c; ++ch) dst[(i * plane + p) * c + ch] = src[(ch * n + i) * plane + p];
}

}  // namespace

ConvAutoencoder::ConvAutoencoder(const AutoencoderShape& s, uint64_t seed) : shape_(s) {
  check_shape(s, "autoencoder");
  params_.assign(static_cast<size_t>(param_offsets(s).total), 0.0f);
  grads_.assign(params_.size(), 0.0f);
  Rng rng(seed);
  const auto defs = layer_defs(s);
  const Offsets o = param_offsets(s);
  for (int l = 0; l < kLayers; ++l) {  // the weight, then the bias (they are adjacent)
    const double bound = 1.0 / std::sqrt(static_cast<double>(defs[l].cin) * defs[l].k * defs[l].k);
    for (int64_t i = o.weight[l]; i < o.bias[l] + defs[l].cout; ++i)
      params_[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
  }
}

ConvAutoencoder::~ConvAutoencoder() = default;
ConvAutoencoder::ConvAutoencoder(const ConvAutoencoder& o) : shape_(o.shape_), params_(o.params_), grads_(o.grads_) {}
ConvAutoencoder& ConvAutoencoder::operator=(const ConvAutoencoder& o) {
  if (this != &o) {
    shape_ = o.shape_;
    params_ = o.params_;
    grads_ = o.grads_;
    train_ws_.reset();
  }
  return *this;
}
ConvAutoencoder::ConvAutoencoder(ConvAutoencoder&&) noexcept = default;
ConvAutoencoder& ConvAutoencoder::operator=(ConvAutoencoder&&) noexcept = default;

std::vector<NamedTensor<float>> ConvAutoencoder::params() { return views<float>(shape_, params_); }
std::vector<NamedTensor<const float>> ConvAutoencoder::params() const {
  return views<const float>(shape_, params_);
}
std::vector<NamedTensor<float>> ConvAutoencoder::grads() { return views<float>(shape_, grads_); }
std::vector<NamedTensor<const float>> ConvAutoencoder::grads() const { return views<const float>(shape_, grads_); }

void ConvAutoencoder::encode(const float* x, int64_t n, float* latents) const {
  if (n < 0) fail("autoencoder encode: ", n, " images");
  const Offsets o = param_offsets(shape_);
  const int S = shape_.image_size, C = shape_.latent_channels;
  const int64_t in = 3LL * S * S, out = shape_.latent_values();
  Workspace ws(false);
  for (int64_t i0 = 0; i0 < n; i0 += kInferChunk) {
    const int64_t m = std::min(kInferChunk, n - i0);
    ws.prepare(shape_, m);
    hwc_to_cnhw(x + i0 * in, m, S, 3, ws.x.data());
    ws.forward(params_.data(), o, 0, kEncoder);
    cnhw_to_hwc(ws.output(kLatent), m, shape_.grid(), C, latents + i0 * out);
  }
}

void ConvAutoencoder::decode(const float* latents, int64_t n, float* x) const {
  if (n < 0) fail("autoencoder decode: ", n, " images");
  const Offsets o = param_offsets(shape_);
  const int S = shape_.image_size, C = shape_.latent_channels;
  const int64_t in = shape_.latent_values(), out = 3LL * S * S;
  Workspace ws(false);
  for (int64_t i0 = 0; i0 < n; i0 += kInferChunk) {
    const int64_t m = std::min(kInferChunk, n - i0);
    ws.prepare(shape_, m);
    hwc_to_cnhw(latents + i0 * in, m, shape_.grid(), C, ws.noisy.data());
    ws.forward(params_.data(), o, kEncoder, kLayers);
    cnhw_to_hwc(ws.output(kOut), m, S, 3, x + i0 * out);
  }
}

double ConvAutoencoder::loss_and_grad(const float* x, int64_t n, const float* noise, float latent_noise) {
  if (n < 1) fail("autoencoder loss: ", n, " images");
  if (!train_ws_) train_ws_ = std::make_unique<Workspace>(true);
  Workspace& ws = *train_ws_;
  const Offsets o = param_offsets(shape_);
  const int S = shape_.image_size, G = shape_.grid(), C = shape_.latent_channels;
  ws.prepare(shape_, n);
  ws.has_result = false;
  hwc_to_cnhw(x, n, S, 3, ws.x.data());
  ws.forward(params_.data(), o, 0, kEncoder);
  // noisy = latents + σ·ξ, ξ given HWC per image.
  const int64_t gplane = static_cast<int64_t>(G) * G;
  const float* lat = ws.output(kLatent);
  for (int ch = 0; ch < C; ++ch)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < gplane; ++p) {
        const int64_t at = (ch * n + i) * gplane + p;
        ws.noisy[at] = noise ? lat[at] + latent_noise * noise[(i * gplane + p) * C + ch] : lat[at];
      }
  ws.forward(params_.data(), o, kEncoder, kLayers);
  // Mean squared error and its gradient; per-plane double sums, added in plane order, so
  // the loss does not depend on the thread count.
  const int64_t plane = static_cast<int64_t>(S) * S, planes = 3 * n;
  const double count = static_cast<double>(planes * plane);
  const float scale = static_cast<float>(2.0 / count);
  double* partial = ws.partial.data();
  const float* y = ws.z[kOut].data();
  const float* t = ws.x.data();
  float* dy = ws.g0.data();
#pragma omp parallel for schedule(static)
  for (int64_t q = 0; q < planes; ++q) {
    double s = 0;
    for (int64_t p = q * plane; p < (q + 1) * plane; ++p) {
      const float e = y[p] - t[p];
      s += static_cast<double>(e) * e;
      dy[p] = scale * e;
    }
    partial[q] = s;
  }
  double sum = 0;
  for (int64_t q = 0; q < planes; ++q) sum += partial[q];
  ws.backward(params_.data(), grads_.data(), o);
  ws.has_result = true;
  return sum / count;
}

std::vector<float> ConvAutoencoder::last_latents() const {
  if (!train_ws_ || !train_ws_->has_result) fail("autoencoder: no loss_and_grad call yet");
  std::vector<float> v(static_cast<size_t>(train_ws_->n * shape_.latent_values()));
  cnhw_to_hwc(train_ws_->output(kLatent), train_ws_->n, shape_.grid(), shape_.latent_channels, v.data());
  return v;
}

std::vector<float> ConvAutoencoder::last_reconstruction() const {
  if (!train_ws_ || !train_ws_->has_result) fail("autoencoder: no loss_and_grad call yet");
  const int S = shape_.image_size;
  std::vector<float> v(static_cast<size_t>(train_ws_->n * 3 * S * S));
  cnhw_to_hwc(train_ws_->output(kOut), train_ws_->n, S, 3, v.data());
  return v;
}

void ConvAutoencoder::save(const std::string& path) const {
  std::vector<io::TensorToWrite> t;
  for (const auto& p : params()) t.push_back({p.name, io::DType::F32, p.shape, p.values.data()});
  io::write_safetensors(path, t,
                        {{"format", kFormat},
                         {"image_size", std::to_string(shape_.image_size)},
                         {"latent_channels", std::to_string(shape_.latent_channels)},
                         {"width1", std::to_string(shape_.width1)},
                         {"width2", std::to_string(shape_.width2)}});
}

ConvAutoencoder ConvAutoencoder::load(const std::string& path) {
  return from_safetensors(io::SafetensorsFile::open(path));
}

ConvAutoencoder ConvAutoencoder::from_safetensors(const io::SafetensorsFile& f) {
  const std::string& path = f.origin();
  const auto& meta = f.metadata();
  auto fmt = meta.find("format");
  if (fmt == meta.end() || fmt->second != kFormat)
    fail(path, ": not a mot autoencoder (metadata format is not '", kFormat, "')");
  ConvAutoencoder ae;
  ae.shape_.image_size = parse_int(meta, "image_size", path);
  ae.shape_.latent_channels = parse_int(meta, "latent_channels", path);
  ae.shape_.width1 = parse_int(meta, "width1", path);
  ae.shape_.width2 = parse_int(meta, "width2", path);
  check_shape(ae.shape_, path);
  const auto expected = param_slots(ae.shape_);
  for (const auto& t : f.tensors()) {
    const bool known = std::any_of(expected.begin(), expected.end(), [&](const auto& v) { return v.name == t.name; });
    if (!known) fail(path, ": unexpected tensor '", t.name, "' in a mot autoencoder");
  }
  // Storage grows only as tensors pass their checks, so a few bytes of hostile header
  // cannot make this allocate a 512-wide model (~50 MB) before failing; a valid file
  // (all its tensors expected, so it holds exactly the parameters) allocates once.
  size_t held = 0;
  for (const auto& t : f.tensors()) held += t.nbytes / sizeof(float);
  ae.params_.reserve(std::min(static_cast<size_t>(param_offsets(ae.shape_).total), held));
  for (const auto& v : expected) {
    const io::TensorInfo* t = f.find(v.name);
    if (!t) fail(path, ": no tensor '", v.name, "'");
    if (t->dtype != io::DType::F32) fail(path, ": '", v.name, "' has dtype ", t->dtype_name, ", expected F32");
    if (t->shape != v.shape)
      fail(path, ": '", v.name, "' has shape ", shape_str(t->shape), ", expected ", shape_str(v.shape),
           " for image_size ", ae.shape_.image_size, ", latent_channels ", ae.shape_.latent_channels, ", widths ",
           ae.shape_.width1, "/", ae.shape_.width2);
    ae.params_.resize(v.offset + v.size);
    float* values = ae.params_.data() + v.offset;
    f.read_f32(*t, values);
    for (size_t i = 0; i < v.size; ++i)
      if (!std::isfinite(values[i])) fail(path, ": '", v.name, "' value ", i, " is not finite");
  }
  ae.grads_.assign(ae.params_.size(), 0.0f);
  return ae;
}

void image_to_floats(const Image& img, int size, float* x) {
  if (img.width != size || img.height != size || img.rgb.size() != static_cast<size_t>(size) * size * 3)
    fail("autoencoder: image of ", img.width, "x", img.height, " (", img.rgb.size(), " bytes); expected ", size, "x",
         size, " RGB");
  for (size_t i = 0; i < img.rgb.size(); ++i) x[i] = img.rgb[i] / 127.5f - 1.0f;
}

Image floats_to_image(const float* x, int size) {
  Image img(size, size);
  for (size_t i = 0; i < img.rgb.size(); ++i) {
    const float v = std::round((x[i] + 1.0f) * 127.5f);
    img.rgb[i] = static_cast<uint8_t>(v != v ? 0.0f : std::clamp(v, 0.0f, 255.0f));
  }
  return img;
}

std::vector<float> encode_images(const ConvAutoencoder& ae, const std::vector<Image>& images, int batch) {
  if (batch < 1) fail("encode_images: batch ", batch, " < 1");
  const AutoencoderShape& s = ae.shape();
  const int64_t in = 3LL * s.image_size * s.image_size, out = s.latent_values();
  std::vector<float> latents(images.size() * static_cast<size_t>(out)), x;
  for (size_t i0 = 0; i0 < images.size(); i0 += static_cast<size_t>(batch)) {
    const size_t m = std::min(images.size() - i0, static_cast<size_t>(batch));
    x.resize(m * static_cast<size_t>(in));
    for (size_t i = 0; i < m; ++i) image_to_floats(images[i0 + i], s.image_size, x.data() + i * in);
    ae.encode(x.data(), static_cast<int64_t>(m), latents.data() + i0 * out);
  }
  return latents;
}

namespace {

void check_training(const std::vector<Image>& images, const AutoencoderShape& s, const AutoencoderTraining& t) {
  check_shape(s, "autoencoder training");
  if (images.empty()) fail("autoencoder training: no images");
  for (size_t i = 0; i < images.size(); ++i) {
    const Image& im = images[i];
    if (im.width != s.image_size || im.height != s.image_size ||
        im.rgb.size() != static_cast<size_t>(s.image_size) * s.image_size * 3)
      fail("autoencoder training: image ", i, " is ", im.width, "x", im.height, " (", im.rgb.size(),
           " bytes), expected ", s.image_size, "x", s.image_size, " RGB");
  }
  if (t.steps < 1) fail("autoencoder training: steps ", t.steps, " < 1");
  if (t.batch < 1 || t.batch > 65536) fail("autoencoder training: batch ", t.batch, " not in [1, 65536]");
  if (!(t.lr > 0 && t.lr < 1)) fail("autoencoder training: learning rate ", t.lr, " not in (0, 1)");
  if (!(t.latent_noise >= 0 && t.latent_noise <= 10))
    fail("autoencoder training: latent noise ", t.latent_noise, " not in [0, 10]");
}

// Linear warm-up over the first min(100, steps/10) steps, then cosine from lr to lr/10.
double learning_rate(const AutoencoderTraining& t, int step) {  // step is 0-based
  const int warm = std::min(100, t.steps / 10);
  if (step < warm) return t.lr * (step + 1) / warm;
  const double lo = t.lr / 10, p = warm >= t.steps - 1 ? 0.0 : double(step - warm) / (t.steps - 1 - warm);
  return lo + 0.5 * (t.lr - lo) * (1 + std::cos(std::numbers::pi * p));
}

}  // namespace

ConvAutoencoder train_autoencoder(const std::vector<Image>& images, const AutoencoderShape& s,
                                  const AutoencoderTraining& t, const std::function<void(int, double)>& progress) {
  check_training(images, s, t);
  ConvAutoencoder ae(s, t.seed);
  // The data order and the noise come from their own stream, so they do not change
  // with the initialisation.
  Rng rng(t.seed ^ 0x6175746f656e63ull);
  const int S = s.image_size;
  const size_t in = 3 * static_cast<size_t>(S) * S, nl = static_cast<size_t>(s.latent_values());
  const size_t B = static_cast<size_t>(t.batch);
  std::vector<float> x(B * in), noise(B * nl);
  std::vector<size_t> order(images.size());
  size_t next = order.size();  // position in the current permutation
  std::span<float> p = ae.flat_params();
  std::vector<float> m(p.size(), 0.0f), v(p.size(), 0.0f);
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  double since = 0;
  int since_n = 0;
  for (int step = 0; step < t.steps; ++step) {
    for (size_t i = 0; i < B; ++i) {
      if (next == order.size()) {  // a fresh permutation of the images
        for (size_t k = 0; k < order.size(); ++k) order[k] = k;
        for (size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[rng.below(k)]);
        next = 0;
      }
      image_to_floats(images[order[next++]], S, x.data() + i * in);
    }
    for (float& e : noise) e = static_cast<float>(rng.normal());
    const double loss = ae.loss_and_grad(x.data(), t.batch, noise.data(), t.latent_noise);
    if (!std::isfinite(loss)) fail("autoencoder training diverged at step ", step + 1, " (loss ", loss, ")");
    const std::span<const float> g = ae.flat_grads();
    const double lr = learning_rate(t, step);
    const double c1 = 1 - std::pow(b1, step + 1), c2 = 1 - std::pow(b2, step + 1);
    const float a = static_cast<float>(lr / c1), inv_c2 = static_cast<float>(1 / c2);
    for (size_t k = 0; k < p.size(); ++k) {
      m[k] = static_cast<float>(b1) * m[k] + static_cast<float>(1 - b1) * g[k];
      v[k] = static_cast<float>(b2) * v[k] + static_cast<float>(1 - b2) * g[k] * g[k];
      p[k] -= a * m[k] / (std::sqrt(v[k] * inv_c2) + static_cast<float>(eps));
    }
    since += loss;
    ++since_n;
    if (progress && ((step + 1) % 100 == 0 || step + 1 == t.steps)) {
      progress(step + 1, since / since_n);
      since = 0;
      since_n = 0;
    }
  }
  return ae;
}

Image decode_image(const ConvAutoencoder& ae, const float* latents) {
  const int S = ae.shape().image_size;
  std::vector<float> x(3 * static_cast<size_t>(S) * S);
  ae.decode(latents, 1, x.data());
  return floats_to_image(x.data(), S);
}

}  // namespace mot::data
