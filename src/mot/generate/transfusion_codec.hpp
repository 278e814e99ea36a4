// Prompts in and generations out for Transfusion models (SPEC 2b): text through the
// corpus's SentencePiece model, images through the data directory's latent space (pixel
// patches or its autoencoder, data/media/latent_space.hpp), the special ids from its
// vocab.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mot/data/media/image.hpp"
#include "mot/data/media/latent_space.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"
#include "mot/generate/diffusion_sampler.hpp"
#include "mot/model/config.hpp"

namespace mot {

class TransfusionCodec {
 public:
  // mot::Error naming the directory when its tokenizer or ids are missing or do not fit.
  TransfusionCodec(const std::string& data_dir, const ModelConfig& c);

  const TransfusionTokens& tokens() const { return tok_; }
  int image_size() const { return space_.image_size(); }  // of image files, in pixels
  // <bos> + the text's ids; mot::Error for characters the tokenizer does not know.
  std::vector<int32_t> text_prompt(const std::string& text) const;
  // A PNG of the model's image size as latents; mot::Error otherwise.
  std::vector<float> image_latents(const std::string& png) const;
  data::Image to_image(const std::vector<float>& latents) const;
  // Caption tokens as text (stops at <eos>).
  std::string decode_text(const std::vector<int32_t>& ids) const;

 private:
  std::string dir_;
  data::TextTokenizer text_;
  TransfusionTokens tok_;
  data::ImageLatentSpace space_;
};

}  // namespace mot
