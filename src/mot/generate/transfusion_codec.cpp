#include "mot/generate/transfusion_codec.hpp"

#include <filesystem>

#include "mot/core/error.hpp"
#include "mot/data/format/vocab.hpp"

namespace mot {

namespace {
const Modality& continuous_of(const ModelConfig& c) {
  const int cm = c.continuous_modality();
  if (cm < 0) fail("internal: TransfusionCodec for a model without a continuous modality");
  return c.modalities[cm];
}
}  // namespace

TransfusionCodec::TransfusionCodec(const std::string& dir, const ModelConfig& c)
    : dir_(dir),
      space_(dir, static_cast<int>(continuous_of(c).image_size), static_cast<int>(continuous_of(c).channels),
             static_cast<int>(continuous_of(c).patch)) {  const data::Vocab v = data::Vocab::read(dir, "generation reads the tokenizer of the data the model was trained on");
  if (!std::filesystem::exists(dir + "/text.model"))
    fail(dir, ": no text.model (generation needs the corpus's SentencePiece tokenizer; pass --data DIR)");
  text_ = data::TextTokenizer::load(dir + "/text.model");
  if (text_.vocab_size() > c.vocab_size)
    fail(dir, "/text.model: ", text_.vocab_size(), " pieces do not fit the model's vocabulary of ", c.vocab_size);
  const auto id = [&](const char* key) {
    if (!v.fields.contains(key) || !v.fields[key].is_number_integer()) fail(dir, "/vocab.json: no integer '", key, "'");
    const int64_t x = v.fields[key].get<int64_t>();
    if (x < 0 || x >= c.vocab_size) fail(dir, "/vocab.json: ", key, " ", x, " is outside the model's vocabulary");
    return static_cast<int32_t>(x);
  };
  tok_ = {id("bos_id"), id("eos_id"), id("boi_id"), id("eoi_id")};
}

std::vector<int32_t> TransfusionCodec::text_prompt(const std::string& text) const {
  std::vector<int32_t> out = {tok_.bos};
  for (int i : text_.encode(text)) {
    if (i == text_.unk_id())
      fail("the prompt '", text, "' has characters the corpus's tokenizer does not know (", dir_, "/text.model)");
    out.push_back(i);
  }
  return out;
}

std::vector<float> TransfusionCodec::image_latents(const std::string& png) const {
  const data::Image img = data::read_png(png);
  const int size = space_.image_size();
  if (img.width != size || img.height != size)
    fail(png, ": the image is ", img.width, "x", img.height, ", the model's images are ", size, "x", size,
         " (resize it first)");
  return space_.encode(img);
}

data::Image TransfusionCodec::to_image(const std::vector<float>& latents) const { return space_.decode(latents.data()); }

std::string TransfusionCodec::decode_text(const std::vector<int32_t>& ids) const {
  std::vector<int> keep;
  for (int32_t i : ids) {
    if (i == tok_.eos) break;
    keep.push_back(i);
  }
  return text_.decode(keep);
}

}  // namespace mot
