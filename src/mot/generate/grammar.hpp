// What a decoder may emit next (modality-constrained decoding, SPEC section 4): in text,
// text tokens and the begin-of-modality markers; inside an image span only image codes,
// exactly the image's token count, then <eoi> (forced, nothing drawn); inside a speech
// span only speech units or <eos_speech>. Built from a corpus's vocab.json (the marker
// ids and the image geometry) checked against the model's modality ranges.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mot/generate/sampling.hpp"
#include "mot/model/config.hpp"

namespace mot {

namespace data {
class Vocab;
}

// What a generation is asked for: a text continuation (until <eos>), one image (its
// codes after a forced <boi>, then <eoi>) or one speech span (after a forced
// <bos_speech>, until <eos_speech>).
enum class GenTarget { text, image, speech };
GenTarget parse_target(const std::string& name);  // "text" | "image" | "speech"; mot::Error otherwise
const char* target_name(GenTarget t);

class TokenGrammar {
 public:
  // mot::Error naming `dir` when vocab.json lacks a marker, or its ranges disagree with
  // the model's modalities.
  TokenGrammar(const ModelConfig& c, const data::Vocab& v, const std::string& dir);

  enum class Span { text, image, speech };
  struct State {
    Span span = Span::text;
    int64_t in_span = 0;  // tokens of the current image/speech span so far
  };

  // The state after reading `tokens` from a document's start (a prompt); mot::Error
  // when the prompt is not a well-formed prefix (a code outside its span, a marker
  // closing nothing).
  State read(const std::vector<int32_t>& tokens) const;
  void advance(State& s, int32_t token) const;
  // The token that must come next (no choice), if any: <eoi> after a full image.
  std::optional<int32_t> forced(const State& s) const;
  // The ranges a sampled token may come from in this state.
  const std::vector<TokenRange>& allowed(const State& s) const;
  // Whether generating for `t` ends once `token` was emitted in the state before it.
  bool ends(GenTarget t, const State& before, int32_t token) const;

  // The marker that opens a target's span, if it has one.
  std::optional<int32_t> opener(GenTarget t) const;
  bool has_speech() const { return speech_.end > speech_.begin; }

  int32_t bos = -1, eos = -1, boi = -1, eoi = -1, bos_speech = -1, eos_speech = -1;
  int64_t tokens_per_image = 0;

 private:
  TokenRange text_, image_, speech_;
  std::vector<TokenRange> text_allowed_, image_allowed_, speech_allowed_;
};

}  // namespace mot
