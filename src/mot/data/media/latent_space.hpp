// What a Transfusion data directory's images are to the model (SPEC 2b): either the
// built-in pixel patches, or the latent image of a learned autoencoder trained by `mot
// data synth --autoencoder` (data/autoencoder/conv_autoencoder.hpp). In the second case
// vocab.json has an "autoencoder" entry naming the weights file, and the model's
// continuous modality describes the latent image, not the pixels: image_size is the
// latent grid's side, channels its channels, patch the tiles of that grid. Shards store
// the latent image as bytes exactly as they store pixels (v = byte / 127.5 - 1), so
// training, parity and the shard format do not change; only the ends that meet real
// images (synth, generate, evalgen, data show) go through this class.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mot/data/format/vocab.hpp"
#include "mot/data/media/image.hpp"

namespace mot::data {

class ConvAutoencoder;

// vocab.json's "autoencoder" entry.
struct AutoencoderEntry {
  std::string file;        // relative to the data directory
  std::string modality;    // the continuous modality it encodes
  int image_size = 0;      // pixels
  int latent_size = 0;     // the latent grid's side
  int latent_channels = 0;
};

class ImageLatentSpace {
 public:
  // The geometry is the model's continuous modality (image_size, channels, patch).
  // mot::Error naming the directory when vocab.json's autoencoder entry, or its weights
  // file, is missing, corrupt or does not fit that geometry.
  ImageLatentSpace(const std::string& data_dir, int size, int channels, int patch);
  ~ImageLatentSpace();
  ImageLatentSpace(ImageLatentSpace&&) noexcept;

  bool learned() const { return ae_ != nullptr; }
  int image_size() const { return pixels_; }  // of the image files, in pixels
  // An image file's pixels as the model's latents ([positions, patch² · channels]);
  // through the autoencoder, quantised to bytes as in the shards. mot::Error unless
  // the image is image_size() square.
  std::vector<float> encode(const Image& img) const;
  // The model's latents as an image (the decoder's output for a learned space).
  Image decode(const float* latents) const;

 private:
  int size_, channels_, patch_, pixels_;
  std::unique_ptr<ConvAutoencoder> ae_;
};

// The "autoencoder" entry of DIR's vocab.json, if it has one. mot::Error naming the
// file when it is malformed.
std::optional<AutoencoderEntry> autoencoder_entry(const Vocab& v, const std::string& dir);

}  // namespace mot::data
