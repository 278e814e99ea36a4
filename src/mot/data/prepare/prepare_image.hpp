// Images for `mot data prepare`: PNG or JPEG files (format sniffed from the first
// bytes, not the extension), centre-cropped to a square and resized by area
// averaging to the VQ image size, tokenised with the VQ codebook of vq.hpp.
#pragma once
#include <string>

#include "mot/data/media/image.hpp"
#include "mot/data/prepare/prepare_media.hpp"
#include "mot/data/tokenize/vq.hpp"

namespace mot::data {

// Reads a PNG or JPEG; mot::Error naming the path if it is neither or is broken.
// min_side lets a JPEG decode at a reduced scale whose shorter side stays >= min_side.
Image read_image_file(const std::string& path, int min_side = 0);

// The largest centred square of img, resized to side x side. Each output pixel is the
// exact area-weighted mean of the source pixels it covers (a box filter, so shrinking
// does not alias); enlarging a small image reduces to nearest-neighbour blocks.
Image fit_square(const Image& img, int side);

class ImageKind final : public MediaKind {
 public:
  explicit ImageKind(const PrepareOptions& opt);
  std::string name() const override { return "image"; }
  std::string caption_key() const override { return "image"; }
  std::vector<std::string> extensions() const override { return {".png", ".jpg", ".jpeg"}; }
  DocNames doc_names() const override { return {"gen", "cap", "img"}; }
  std::pair<int, int> markers(const TextTokenizer& tok) const override;
  std::vector<std::pair<size_t, std::string>> train(const std::vector<std::string>& paths, bool quiet) override;
  void load(const std::string& dir, const nlohmann::json& vocab) override;
  void save(const std::string& dir) const override;
  std::vector<std::string> files() const override { return {"vq.safetensors"}; }
  uint32_t vocab_size() const override { return static_cast<uint32_t>(vq_.K); }
  void describe(nlohmann::json& vocab) const override;
  std::vector<Encoded> encode(const std::vector<std::string>& paths) override;
  void report(nlohmann::json& summary) const override;

 private:
  int size_, patch_, codebook_, iters_;
  int64_t sample_;
  uint64_t seed_;
  VqCodebook vq_;
  size_t sampled_ = 0;          // images the codebook learned from (0 when loaded)
  double psnr_sum_ = 0;         // over every encoded image, summed in input order
  size_t psnr_n_ = 0;
};

}  // namespace mot::data
