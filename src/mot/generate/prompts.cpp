#include "mot/generate/prompts.hpp"

#include <filesystem>

#include "mot/audio/audio_io.hpp"
#include "mot/core/error.hpp"
#include "mot/data/media/image.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"
#include "mot/data/tokenize/vq.hpp"

namespace mot {

namespace fs = std::filesystem;

PromptCodec::PromptCodec(const std::string& dir, const ModelConfig& c)
    : dir_(dir), vocab_(data::Vocab::read(dir, "generation reads the tokenizers of the data the model was trained on")) {
  if (!fs::exists(dir + "/text.model"))
    fail(dir, ": no text.model (generation needs the corpus's SentencePiece tokenizer; pass --data DIR)");
  text_ = data::TextTokenizer::load(dir + "/text.model");
  grammar_ = std::make_unique<TokenGrammar>(c, vocab_, dir);
  if (text_.vocab_size() > c.vocab_size)
    fail(dir, "/text.model: ", text_.vocab_size(), " pieces do not fit the model's vocabulary of ", c.vocab_size);
  if (const int m = c.modality_index("image"); m >= 0) {
    image0_ = static_cast<int32_t>(c.modalities[m].begin);
    if (!vocab_.fields.contains("image_size") || !vocab_.fields["image_size"].is_number_integer())
      fail(dir, "/vocab.json: no integer 'image_size'");
    image_size_ = vocab_.fields["image_size"].get<int>();
    vq_ = std::make_unique<data::VqCodebook>(data::VqCodebook::load(dir + "/vq.safetensors"));
    const int64_t side = image_size_ / vq_->patch;
    if (image_size_ % vq_->patch != 0 || side * side != grammar_->tokens_per_image)
      fail(dir, ": vq.safetensors (patch ", vq_->patch, ") and vocab.json (image_size ", image_size_, ", ",
           grammar_->tokens_per_image, " tokens per image) disagree");
  }
  if (const int m = c.modality_index("speech"); m >= 0) {
    speech0_ = static_cast<int32_t>(c.modalities[m].begin);
    units_ = std::make_unique<audio::UnitCodebook>(audio::UnitCodebook::load(dir + "/speech.safetensors"));
  }
}

PromptCodec::~PromptCodec() = default;

std::vector<int32_t> PromptCodec::text_prompt(const std::string& text) const {
  std::vector<int32_t> out = {grammar_->bos};
  for (int id : text_.encode(text)) {
    if (id == text_.unk_id())
      fail("the prompt '", text, "' has characters the corpus's tokenizer does not know (", dir_, "/text.model)");
    out.push_back(id);
  }
  return out;
}

std::vector<int32_t> PromptCodec::image_prompt(const std::string& png) const {
  if (!vq_) fail("--prompt-image: the model has no image modality");
  const data::Image img = data::read_png(png);
  if (img.width != image_size_ || img.height != image_size_)
    fail(png, ": the image is ", img.width, "x", img.height, ", the corpus's images are ", image_size_, "x",
         image_size_, " (resize it first)");
  std::vector<uint32_t> codes(static_cast<size_t>(grammar_->tokens_per_image));
  vq_->encode(img, codes.data());
  std::vector<int32_t> out = {grammar_->bos, grammar_->boi};
  for (uint32_t k : codes) out.push_back(image0_ + static_cast<int32_t>(k));
  out.push_back(grammar_->eoi);
  return out;
}

std::vector<int32_t> PromptCodec::audio_prompt(const std::string& wav) const {
  if (!units_) fail("--prompt-audio: the model has no speech modality");
  const std::vector<float> pcm = audio::read_audio(wav, 60.0);
  const std::vector<uint32_t> units = audio::audio_to_units(*units_, pcm);
  std::vector<int32_t> out = {grammar_->bos, grammar_->bos_speech};
  for (uint32_t u : units) out.push_back(speech0_ + static_cast<int32_t>(u));
  out.push_back(grammar_->eos_speech);
  return out;
}

PromptCodec::Decoded PromptCodec::decode(const std::vector<int32_t>& tokens) const {
  Decoded d;
  std::vector<int> text;
  auto flush = [&] {
    if (!text.empty()) d.text += text_.decode(text);
    text.clear();
  };
  std::vector<std::vector<uint32_t>> images;
  enum { kText, kImage, kSpeech } span = kText;
  for (int32_t t : tokens) {
    if (span == kText && t == grammar_->boi) {
      flush();
      span = kImage;
      images.emplace_back();
      d.text += d.text.empty() ? "<image>" : " <image> ";
    } else if (span == kText && t == grammar_->bos_speech) {
      flush();
      span = kSpeech;
      d.speech.emplace_back();
      d.text += d.text.empty() ? "<speech>" : " <speech> ";
    } else if (span == kImage && t == grammar_->eoi) {
      span = kText;
    } else if (span == kSpeech && t == grammar_->eos_speech) {
      span = kText;
    } else if (span == kImage) {
      images.back().push_back(static_cast<uint32_t>(t - image0_));
    } else if (span == kSpeech) {
      d.speech.back().push_back(static_cast<uint32_t>(t - speech0_));
    } else {
      text.push_back(t);
    }
  }
  flush();
  for (const auto& im : images)
    if (static_cast<int64_t>(im.size()) == grammar_->tokens_per_image)
      d.images.push_back(vq_->decode(im.data(), image_size_, image_size_));
  return d;
}

PromptCodec::Written PromptCodec::write_outputs(const std::vector<int32_t>& tokens, const std::string& stem) const {
  const Decoded d = decode(tokens);
  Written w;
  w.text = d.text;
  for (size_t i = 0; i < d.images.size(); ++i) {
    const std::string path = stem + (i ? cat("-", i + 1) : "") + ".png";
    data::write_png(path, d.images[i]);
    w.files.push_back(path);
  }
  int n = 0;
  for (const auto& sp : d.speech) {
    if (sp.empty()) continue;
    const std::string path = stem + (n++ ? cat("-", n) : "") + ".wav";
    audio::write_wav(path, audio::units_to_audio(*units_, sp.data(), sp.size()), units_->mel.sample_rate);
    w.files.push_back(path);
  }
  return w;
}

std::string tokenizer_dir(const std::string& given, const std::string& model_path) {
  if (!given.empty()) return given;
  const fs::path dir = fs::path(model_path).parent_path();
  const fs::path run_config = dir / "config.toml";
  if (fs::exists(run_config)) {
    try {
      const RunConfig rc = load_run_config(run_config.string(), {});
      if (!rc.data.path.empty() && data::Vocab::exists(rc.data.path)) return rc.data.path;
    } catch (const Error&) {
      // A config that no longer loads (its data moved): fall through to the next guess.
    }
  }
  const std::string here = dir.empty() ? "." : dir.string();
  if (data::Vocab::exists(here)) return here;
  fail("no tokenizers found for ", model_path, ": pass --data DIR (the data directory the model was trained on, with ",
       "vocab.json and text.model)");
}

}  // namespace mot
