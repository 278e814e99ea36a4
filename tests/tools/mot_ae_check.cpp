// The image autoencoder's forward and backward for the PyTorch parity test
// (tests/reference/test_autoencoder_parity.py); the autoencoder has no CLI of its own.
//
//   mot_ae_check MODEL INPUTS OUT
//
// MODEL: an autoencoder file (ConvAutoencoder::load). INPUTS: safetensors with "images"
// F32 [n, S, S, 3] in [-1, 1] and "noise" F32 [n, G, G, C], metadata "latent_noise".
// OUT gets "loss" [1] (also as metadata "loss", 17 digits), "latents" [n, G, G, C] and
// "reconstruction" [n, S, S, 3] of loss_and_grad, "grad.<param>" for every parameter,
// "encoded" = encode(images) and "decoded" = decode(latents + latent_noise · noise).
// Errors: one line on stderr, exit 2.
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/data/autoencoder/conv_autoencoder.hpp"
#include "mot/io/safetensors.hpp"

namespace {

std::vector<float> read_tensor(const mot::io::SafetensorsFile& f, const std::string& name,
                               const std::vector<int64_t>& shape) {
  const mot::io::TensorInfo* t = f.find(name);
  if (!t) mot::fail(f.origin(), ": no tensor '", name, "'");
  if (t->dtype != mot::io::DType::F32 || t->shape != shape)
    mot::fail(f.origin(), ": '", name, "' is not F32 of the expected shape");
  std::vector<float> v(static_cast<size_t>(t->numel()));
  f.read_f32(*t, v.data());
  return v;
}

int run(int argc, char** argv) {
  if (argc != 4) mot::fail("usage: mot_ae_check MODEL INPUTS OUT");
  mot::data::ConvAutoencoder ae = mot::data::ConvAutoencoder::load(argv[1]);
  const auto& s = ae.shape();
  const auto in = mot::io::SafetensorsFile::open(argv[2]);
  const mot::io::TensorInfo* ti = in.find("images");
  if (!ti || ti->shape.size() != 4 || ti->shape[0] < 1) mot::fail(argv[2], ": no 'images' [n, S, S, 3]");
  const int64_t n = ti->shape[0], S = s.image_size, G = s.grid(), C = s.latent_channels;
  const std::vector<float> x = read_tensor(in, "images", {n, S, S, 3});
  const std::vector<float> noise = read_tensor(in, "noise", {n, G, G, C});
  auto it = in.metadata().find("latent_noise");
  if (it == in.metadata().end()) mot::fail(argv[2], ": no metadata 'latent_noise'");
  const float sigma = std::stof(it->second);

  const double loss = ae.loss_and_grad(x.data(), n, noise.data(), sigma);
  const std::vector<float> latents = ae.last_latents(), recon = ae.last_reconstruction();
  std::vector<float> encoded(latents.size()), decoded(recon.size()), noisy(latents.size());
  ae.encode(x.data(), n, encoded.data());
  for (size_t i = 0; i < noisy.size(); ++i) noisy[i] = latents[i] + sigma * noise[i];
  ae.decode(noisy.data(), n, decoded.data());

  const float loss32 = static_cast<float>(loss);
  std::vector<mot::io::TensorToWrite> out = {
      {"loss", mot::io::DType::F32, {1}, &loss32},
      {"latents", mot::io::DType::F32, {n, G, G, C}, latents.data()},
      {"reconstruction", mot::io::DType::F32, {n, S, S, 3}, recon.data()},
      {"encoded", mot::io::DType::F32, {n, G, G, C}, encoded.data()},
      {"decoded", mot::io::DType::F32, {n, S, S, 3}, decoded.data()},
  };
  const auto grads = std::as_const(ae).grads();
  for (const auto& g : grads) out.push_back({"grad." + g.name, mot::io::DType::F32, g.shape, g.values.data()});
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", loss);
  mot::io::write_safetensors(argv[3], out, {{"loss", buf}});
  std::printf("loss %s\n", buf);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // mot::Error, or std::stof on bad metadata
    std::fprintf(stderr, "mot_ae_check: %s\n", e.what());
    return 2;
  }
}
