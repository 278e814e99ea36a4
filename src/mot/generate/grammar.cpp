#include "mot/generate/grammar.hpp"

#include <algorithm>

#include "mot/core/error.hpp"
#include "mot/data/format/vocab.hpp"

namespace mot {

GenTarget parse_target(const std::string& name) {
  if (name == "text") return GenTarget::text;
  if (name == "image") return GenTarget::image;
  if (name == "speech") return GenTarget::speech;
  fail("--modality '", name, "': expected text, image or speech");
}

const char* target_name(GenTarget t) {
  return t == GenTarget::image ? "image" : t == GenTarget::speech ? "speech" : "text";
}

namespace {

// [begin, end) minus the listed ids, as ranges.
std::vector<TokenRange> without(TokenRange r, std::vector<int32_t> drop) {
  std::sort(drop.begin(), drop.end());
  std::vector<TokenRange> out;
  int32_t at = r.begin;
  for (int32_t d : drop) {
    if (d < at || d >= r.end) continue;
    if (d > at) out.push_back({at, d});
    at = d + 1;
  }
  if (at < r.end) out.push_back({at, r.end});
  return out;
}

}  // namespace

TokenGrammar::TokenGrammar(const ModelConfig& c, const data::Vocab& v, const std::string& dir) {
  const auto& f = v.fields;
  auto id = [&](const char* key, bool required) -> int32_t {
    if (!f.contains(key)) {
      if (required) fail(dir, "/vocab.json: no '", key, "' (generation needs the corpus's marker ids)");
      return -1;
    }
    if (!f[key].is_number_integer() || f[key].get<int64_t>() < 0 || f[key].get<int64_t>() >= c.vocab_size)
      fail(dir, "/vocab.json: '", key, "' is not a token id of this model (vocab_size ", c.vocab_size, ")");
    return f[key].get<int32_t>();
  };
  bos = id("bos_id", true);
  eos = id("eos_id", true);
  boi = id("boi_id", false);
  eoi = id("eoi_id", false);
  bos_speech = id("bos_speech_id", false);
  eos_speech = id("eos_speech_id", false);
  auto range = [&](const char* name) -> TokenRange {
    const int m = c.modality_index(name);
    if (m < 0) return {};
    return {static_cast<int32_t>(c.modalities[m].begin), static_cast<int32_t>(c.modalities[m].end)};
  };
  text_ = range("text");
  image_ = range("image");
  speech_ = range("speech");
  if (text_.end <= text_.begin) fail("the model has no 'text' modality (generation decodes text tokens)");
  const std::vector<data::ModalityRange> vr = v.modalities(dir);
  for (const auto& m : vr) {
    const int i = c.modality_index(m.name);
    if (i < 0 || c.modalities[i].begin != m.begin || c.modalities[i].end != m.end)
      fail(dir, "/vocab.json: modality '", m.name, "' [", m.begin, ", ", m.end, ") is not the model's (this data ",
           "directory did not train this model)");
  }
  for (int32_t marker : {bos, eos, boi, eoi, bos_speech, eos_speech})
    if (marker >= 0 && (marker < text_.begin || marker >= text_.end))
      fail(dir, "/vocab.json: marker id ", marker, " is not a text-vocabulary id");
  if (image_.end > image_.begin) {
    if (boi < 0 || eoi < 0) fail(dir, "/vocab.json: an image modality without boi_id/eoi_id");
    if (!f.contains("tokens_per_image") || !f["tokens_per_image"].is_number_integer() ||
        f["tokens_per_image"].get<int64_t>() < 1)
      fail(dir, "/vocab.json: no positive 'tokens_per_image' (an image's code count)");
    tokens_per_image = f["tokens_per_image"].get<int64_t>();
  }
  if (speech_.end > speech_.begin && (bos_speech < 0 || eos_speech < 0))
    fail(dir, "/vocab.json: a speech modality without bos_speech_id/eos_speech_id");
  // Text: never the document start, a closing marker, <unk> (id 0), or an opener of a
  // modality the model lacks.
  std::vector<int32_t> drop = {bos, 0};
  for (int32_t m : {eoi, eos_speech})
    if (m >= 0) drop.push_back(m);
  if (image_.end <= image_.begin && boi >= 0) drop.push_back(boi);
  if (speech_.end <= speech_.begin && bos_speech >= 0) drop.push_back(bos_speech);
  text_allowed_ = without(text_, drop);
  image_allowed_ = {image_};
  speech_allowed_ = {speech_};
  if (eos_speech >= 0) speech_allowed_.push_back({eos_speech, eos_speech + 1});
}

void TokenGrammar::advance(State& s, int32_t t) const {
  auto in = [](TokenRange r, int32_t x) { return x >= r.begin && x < r.end; };
  switch (s.span) {
    case Span::image:
      if (in(image_, t) && s.in_span < tokens_per_image) {
        ++s.in_span;
      } else if (t == eoi && s.in_span == tokens_per_image) {
        s = State{};
      } else {
        fail("token ", t, " cannot follow ", s.in_span, " of an image's ", tokens_per_image, " codes");
      }
      return;
    case Span::speech:
      if (in(speech_, t)) {
        ++s.in_span;
      } else if (t == eos_speech) {
        s = State{};
      } else {
        fail("token ", t, " inside a speech span is not a speech unit or <eos_speech>");
      }
      return;
    case Span::text:
      if (t == boi && image_.end > image_.begin) {
        s = {Span::image, 0};
      } else if (t == bos_speech && speech_.end > speech_.begin) {
        s = {Span::speech, 0};
      } else if (!in(text_, t) || t == eoi || t == eos_speech) {
        fail("token ", t, " is not a text token outside an image or speech span");
      }
      return;
  }
}

TokenGrammar::State TokenGrammar::read(const std::vector<int32_t>& tokens) const {
  State s;
  for (int32_t t : tokens) advance(s, t);
  return s;
}

std::optional<int32_t> TokenGrammar::forced(const State& s) const {
  if (s.span == Span::image && s.in_span == tokens_per_image) return eoi;
  return std::nullopt;
}

const std::vector<TokenRange>& TokenGrammar::allowed(const State& s) const {
  return s.span == Span::image ? image_allowed_ : s.span == Span::speech ? speech_allowed_ : text_allowed_;
}

bool TokenGrammar::ends(GenTarget t, const State& before, int32_t token) const {
  switch (t) {
    case GenTarget::image: return before.span == Span::image && token == eoi;
    case GenTarget::speech: return before.span == Span::speech && token == eos_speech;
    case GenTarget::text: return before.span == Span::text && token == eos;
  }
  return false;
}

std::optional<int32_t> TokenGrammar::opener(GenTarget t) const {
  if (t == GenTarget::image) {
    if (image_.end <= image_.begin) fail("--modality image: the model has no image modality");
    return boi;
  }
  if (t == GenTarget::speech) {
    if (speech_.end <= speech_.begin) fail("--modality speech: the model has no speech modality");
    return bos_speech;
  }
  return std::nullopt;
}

}  // namespace mot
