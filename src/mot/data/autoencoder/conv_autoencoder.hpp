// A small convolutional image autoencoder: the learned latent space of the Transfusion
// setting's images (data/media/latent_space.hpp). An S x S RGB image becomes a G x G
// grid (G = S/4) of C latent values in (-1, 1), and back.
//
//   encoder: conv3x3 3→w1, SiLU; conv3x3/2 w1→w2, SiLU; conv3x3/2 w2→w2, SiLU;
//            conv1x1 w2→C; tanh
//   decoder: conv3x3 C→w2, SiLU; conv3x3 w2→w2, SiLU; up x2; conv3x3 w2→w1, SiLU;
//            up x2; conv3x3 w1→w1, SiLU; conv3x3 w1→3
//
// Every conv has a bias; 3x3 convs pad by 1, stride 2 halves the side (PyTorch's
// Conv2d(k=3, s=2, p=1)); "up" is nearest-neighbour. The training loss is the mean over
// all n·S·S·3 values of (decode(encode(x) + σ·ξ) − x)², ξ ~ N(0, 1) the latent noise:
// it makes the decoder robust to imprecise latents (what a diffusion model hands it).
// The layers and their backward are in conv_ops.hpp; the gradients are checked against
// PyTorch by tests/reference/test_autoencoder_parity.py.
//
// Images and latents are (row, column, channel) per image (HWC, as Image stores bytes);
// pixel values are v / 127.5 − 1.
//
// File (safetensors, F32): encoder.conv1..conv4 and decoder.conv1..conv5, each .weight
// (OIHW, as PyTorch) and .bias; metadata format = "mot-autoencoder", image_size,
// latent_channels, width1, width2.
//
// Determinism: training is a pure function of (images, shape, training options) for a
// given build and thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mot/data/media/image.hpp"

namespace mot::io {
class SafetensorsFile;
}

namespace mot::data {

struct AutoencoderShape {
  int image_size = 24, latent_channels = 4, width1 = 16, width2 = 32;
  int grid() const { return image_size / 4; }
  int64_t latent_values() const;  // grid² · latent_channels, per image
  // mot::Error unless image_size is a multiple of 4 in [4, 512], latent_channels is in
  // [1, 64] and the widths are in [1, 512].
  void check() const;
};

struct AutoencoderTraining {
  int steps = 2000, batch = 64;
  double lr = 6e-3;  // Adam (β 0.9/0.999, eps 1e-8), linear warm-up, then cosine decay to lr/10
  float latent_noise = 0.1f;
  uint64_t seed = 1;
};

// A named parameter (or gradient) tensor of the model, viewing its storage.
template <class T>
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<T> values;
};

class ConvAutoencoder {
 public:
  // PyTorch's default Conv2d init (kaiming-uniform with a = √5: weights and biases
  // uniform in ±1/√fan_in), drawn from mot::Rng(seed). mot::Error on a bad shape.
  ConvAutoencoder(const AutoencoderShape& s, uint64_t seed);
  ~ConvAutoencoder();
  ConvAutoencoder(const ConvAutoencoder& o);  // copies the weights, not the workspace
  ConvAutoencoder& operator=(const ConvAutoencoder& o);
  ConvAutoencoder(ConvAutoencoder&&) noexcept;
  ConvAutoencoder& operator=(ConvAutoencoder&&) noexcept;

  // Validates everything (metadata, every tensor's presence, dtype and shape, finite
  // values, no unknown tensors); mot::Error naming the path on any problem.
  static ConvAutoencoder load(const std::string& path);
  // The same validation on an already parsed file (errors name f.origin()); load(path)
  // is from_safetensors(SafetensorsFile::open(path)). For fuzzing.
  static ConvAutoencoder from_safetensors(const io::SafetensorsFile& f);
  void save(const std::string& path) const;  // atomic

  const AutoencoderShape& shape() const { return shape_; }

  // x: n images of S·S·3 floats in [-1, 1]; latents: n × latent_values() floats in
  // (-1, 1). Both HWC per image. Thread-safe (each call has its own workspace).
  void encode(const float* x, int64_t n, float* latents) const;
  void decode(const float* latents, int64_t n, float* x) const;

  // The training loss for n images (noise: n × latent_values() values of ξ, HWC like the
  // latents, or null for none); fills grads(). Reuses a workspace sized for the largest
  // n seen so far, so repeated calls with the same n allocate nothing.
  double loss_and_grad(const float* x, int64_t n, const float* noise, float latent_noise);
  // The latents (before the noise) and the reconstruction of the last loss_and_grad
  // call, HWC per image (mot::Error before the first call).
  std::vector<float> last_latents() const;
  std::vector<float> last_reconstruction() const;

  // In the file's order (encoder.conv1.weight, encoder.conv1.bias, ...).
  std::vector<NamedTensor<float>> params();
  std::vector<NamedTensor<const float>> params() const;
  std::vector<NamedTensor<float>> grads();
  std::vector<NamedTensor<const float>> grads() const;
  // All parameters as one flat array in params() order (Adam works on it), and the
  // gradients in the same layout.
  std::span<float> flat_params() { return params_; }
  std::span<const float> flat_params() const { return params_; }
  std::span<const float> flat_grads() const { return grads_; }

 private:
  struct Workspace;  // every buffer of a pass over a batch (conv_autoencoder.cpp)
  AutoencoderShape shape_;
  std::vector<float> params_, grads_;
  std::unique_ptr<Workspace> train_ws_;  // for loss_and_grad

  ConvAutoencoder() = default;
};

// Trains a ConvAutoencoder(s, t.seed) with Adam on `images` (each s.image_size square
// RGB), batches of t.batch drawn as consecutive runs of seeded random permutations of
// the images, the latent noise ξ from the same seeded Rng. progress(step, loss), if not
// empty, is called every 100 steps and after the last with the mean loss of the steps
// since the previous call. mot::Error on bad images or options, or if the loss stops
// being finite.
ConvAutoencoder train_autoencoder(const std::vector<Image>& images, const AutoencoderShape& s,
                                  const AutoencoderTraining& t, const std::function<void(int, double)>& progress);

// An image as size·size·3 floats v / 127.5 − 1 (HWC); mot::Error unless it is size x size
// with a whole RGB buffer.
void image_to_floats(const Image& img, int size, float* x);
// size·size·3 floats (HWC) as an image, rounding (v + 1) · 127.5 to the nearest byte,
// clamped to [0, 255].
Image floats_to_image(const float* x, int size);

// The latents of every image (images.size() × latent_values() floats, HWC per image),
// encoded `batch` images at a time. mot::Error unless every image is S x S RGB.
std::vector<float> encode_images(const ConvAutoencoder& ae, const std::vector<Image>& images, int batch = 256);
// One image from its latents (latent_values() floats, HWC).
Image decode_image(const ConvAutoencoder& ae, const float* latents);

}  // namespace mot::data
