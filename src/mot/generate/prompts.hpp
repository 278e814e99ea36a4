// Prompts in and generations out, through a corpus's tokenizers (a data directory made
// by `mot data synth` or `mot data prepare`): text via SentencePiece (text.model),
// images via the VQ codebook (vq.safetensors), speech via the unit codebook
// (speech.safetensors). Every prompt is a document start: <bos>, then the text, or the
// image as <boi> codes <eoi>, or the audio as <bos_speech> units <eos_speech>.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mot/data/format/vocab.hpp"
#include "mot/data/media/image.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"
#include "mot/generate/grammar.hpp"
#include "mot/model/config.hpp"

namespace mot {

namespace data {
class VqCodebook;
}
namespace audio {
struct UnitCodebook;
}

class PromptCodec {
 public:
  // mot::Error naming the directory when a tokenizer is missing or does not fit the model.
  PromptCodec(const std::string& data_dir, const ModelConfig& c);
  ~PromptCodec();

  const TokenGrammar& grammar() const { return *grammar_; }
  const std::string& dir() const { return dir_; }

  // mot::Error for text the tokenizer cannot represent (characters it maps to <unk>).
  std::vector<int32_t> text_prompt(const std::string& text) const;
  // mot::Error for an unreadable PNG or one that is not the corpus's image size.
  std::vector<int32_t> image_prompt(const std::string& png) const;
  // mot::Error for an unreadable audio file, or a corpus without speech.
  std::vector<int32_t> audio_prompt(const std::string& wav) const;

  // A generation's tokens as text (images and speech spans as <image> / <speech>), the
  // images it completed (spans cut short by --max-tokens are dropped) and its speech
  // spans' units.
  struct Decoded {
    std::string text;
    std::vector<data::Image> images;
    std::vector<std::vector<uint32_t>> speech;
  };
  Decoded decode(const std::vector<int32_t>& tokens) const;
  // decode(), with the images and speech written to stem.png / stem-2.png ... and
  // stem.wav ...; returns the text and the files written.
  struct Written {
    std::string text;
    std::vector<std::string> files;
  };
  Written write_outputs(const std::vector<int32_t>& tokens, const std::string& stem) const;

 private:
  std::string dir_;
  data::Vocab vocab_;
  data::TextTokenizer text_;
  std::unique_ptr<TokenGrammar> grammar_;
  std::unique_ptr<data::VqCodebook> vq_;        // null without an image modality
  std::unique_ptr<audio::UnitCodebook> units_;  // null without speech
  int image_size_ = 0;
  int32_t image0_ = 0, speech0_ = 0;
};

// The data directory whose tokenizers a model uses: `given` if not empty; else the
// [data] path of the run's config.toml beside the model; else the model's own
// directory if it holds a vocab.json. mot::Error saying to pass --data otherwise.
std::string tokenizer_dir(const std::string& given, const std::string& model_path);

}  // namespace mot
