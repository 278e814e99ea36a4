#include "mot/data/media/latent_space.hpp"

#include <filesystem>

#include "mot/core/error.hpp"
#include "mot/data/autoencoder/conv_autoencoder.hpp"
#include "mot/data/media/latents.hpp"

namespace mot::data {

std::optional<AutoencoderEntry> autoencoder_entry(const Vocab& v, const std::string& dir) {
  if (!v.fields.is_object() || !v.fields.contains("autoencoder")) return std::nullopt;
  const std::string where = Vocab::path(dir) + ": autoencoder";
  const nlohmann::json& a = v.fields["autoencoder"];
  if (!a.is_object()) fail(where, ": expected an object");
  const auto str = [&](const char* k) {
    if (!a.contains(k) || !a[k].is_string()) fail(where, ": no string '", k, "'");
    return a[k].get<std::string>();
  };
  const auto num = [&](const char* k) {
    if (!a.contains(k) || !a[k].is_number_integer()) fail(where, ": no integer '", k, "'");
    const int64_t x = a[k].get<int64_t>();
    if (x < 1 || x > 4096) fail(where, ".", k, ": ", x, " is outside [1, 4096]");
    return static_cast<int>(x);
  };
  AutoencoderEntry e{str("file"), str("modality"), num("image_size"), num("latent_size"), num("latent_channels")};
  if (e.file.empty() || e.file.find('/') != std::string::npos || e.file.find("..") != std::string::npos)
    fail(where, ".file: '", e.file, "' must name a file inside the data directory");
  return e;
}

ImageLatentSpace::ImageLatentSpace(const std::string& dir, int size, int channels, int patch)
    : size_(size), channels_(channels), patch_(patch), pixels_(size) {
  const Vocab v = Vocab::read(dir, "the model's images need the data directory it was trained on (pass --data DIR)");
  const auto e = autoencoder_entry(v, dir);
  if (!e) {
    if (channels != 3) fail("the model's images have ", channels, " channels, and ", dir,
                            "/vocab.json names no autoencoder; image files are RGB (3)");
    return;
  }
  if (e->latent_size != size || e->latent_channels != channels)
    fail(Vocab::path(dir), ": the autoencoder's latents are ", e->latent_size, "x", e->latent_size, "x",
         e->latent_channels, ", the model's images are ", size, "x", size, "x", channels,
         " (the model was trained on another data directory?)");
  const std::string path = dir + "/" + e->file;
  if (!std::filesystem::exists(path)) fail(path, ": missing (vocab.json names it as the images' autoencoder)");
  ae_ = std::make_unique<ConvAutoencoder>(ConvAutoencoder::load(path));
  const AutoencoderShape& s = ae_->shape();
  if (s.grid() != size || s.latent_channels != channels || s.image_size != e->image_size)
    fail(path, ": an autoencoder of ", s.image_size, "px images to ", s.grid(), "x", s.grid(), "x", s.latent_channels,
         " latents, but vocab.json says ", e->image_size, "px to ", size, "x", size, "x", channels);
  pixels_ = s.image_size;
}

ImageLatentSpace::~ImageLatentSpace() = default;
ImageLatentSpace::ImageLatentSpace(ImageLatentSpace&&) noexcept = default;

std::vector<float> ImageLatentSpace::encode(const Image& img) const {
  if (img.width != pixels_ || img.height != pixels_)
    fail("image of ", img.width, "x", img.height, " pixels; the model's images are ", pixels_, "x", pixels_);
  if (!ae_) return image_to_latents(img, size_, patch_);
  std::vector<float> grid = encode_images(*ae_, {img});
  for (float& x : grid) x = pixel_latent(latent_byte(x));  // what the shards hold
  return grid_to_latents(grid.data(), size_, channels_, patch_);
}

Image ImageLatentSpace::decode(const float* latents) const {
  if (!ae_) return latents_to_image(latents, size_, patch_);
  const std::vector<float> grid = latents_to_grid(latents, size_, channels_, patch_);
  return decode_image(*ae_, grid.data());
}

}  // namespace mot::data
