#include "mot/evalgen/evalgen.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/evalgen/evalgen_output.hpp"
#include "mot/evalgen/evalgen_transfusion.hpp"
#include "mot/evalgen/scores.hpp"
#include "mot/generate/generator.hpp"
#include "mot/generate/prompts.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"

namespace mot {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Document i of DIR/NAME.shard up to and including its first `marker` (the prompt
// part of a val-cap or val-asr document).
std::vector<int32_t> doc_prefix(const data::Shard& s, size_t i, int32_t marker, const std::string& name) {
  std::vector<int32_t> out;
  for (uint64_t k = s.doc_offset(i); k < s.doc_offset(i + 1); ++k) {
    out.push_back(static_cast<int32_t>(s.token(k)));
    if (out.back() == marker) return out;
  }
  fail(name, ": document ", i, " has no ", marker, " marker (not a corpus made by `mot data synth`)");
}

// The tokens between the first `open` and the next `close` of document i.
std::vector<int32_t> doc_span(const data::Shard& s, size_t i, int32_t open, int32_t close) {
  std::vector<int32_t> out;
  bool in = false;
  for (uint64_t k = s.doc_offset(i); k < s.doc_offset(i + 1); ++k) {
    const int32_t t = static_cast<int32_t>(s.token(k));
    if (in && t == close) break;
    if (in || t == open) out.push_back(t);
    in = in || t == open;
  }
  out.push_back(close);
  return out;
}

struct Runner {
  const EvalgenOptions& o;
  const ModelConfig& cfg;
  const PromptCodec& codec;
  Model* weights;  // null for a baseline
  GenerationOptions go;

  // New tokens for each request, `o.batch` prompts per generate() call.
  // max_tokens 0: the target's default, cut to what the model's max_seq_len leaves.
  std::vector<std::vector<int32_t>> run(const std::vector<GenerationRequest>& reqs, uint64_t seed_offset,
                                        int64_t max_tokens) const {
    std::vector<std::vector<int32_t>> out;
    for (size_t b = 0; b < reqs.size(); b += static_cast<size_t>(o.batch)) {
      const std::vector<GenerationRequest> part(reqs.begin() + b,
                                                reqs.begin() + std::min(reqs.size(), b + static_cast<size_t>(o.batch)));
      GenerationOptions g = go;
      g.seed = go.seed * 1000003 + seed_offset + b;
      size_t longest = 0;
      for (const auto& q : part) longest = std::max(longest, q.prompt.size() + 1);
      g.max_tokens = std::min<int64_t>(max_tokens, cfg.max_seq_len - static_cast<int64_t>(longest));
      for (auto& gen : generate(cfg, weights->params(), weights->moe_thresholds(), codec.grammar(), part, g))
        out.push_back(std::move(gen.tokens));
    }
    return out;
  }
};

// What a baseline "generates": the corpus's own answer for scene `src` (truth,
// shuffled), or random tokens of the span's kind.
std::vector<int32_t> random_tokens(Rng& rng, int32_t lo, int32_t hi, int64_t n) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(lo + static_cast<int32_t>(rng.below(static_cast<uint64_t>(hi - lo))));
  return t;
}

// A baseline has no model: the corpus's vocabulary stands in for its config.
ModelConfig config_from_vocab(const std::string& dir) {
  const data::Vocab v = data::Vocab::read(dir, "not a corpus made by `mot data synth`");
  ModelConfig c;
  if (!v.fields.contains("vocab_size") || !v.fields["vocab_size"].is_number_integer())
    fail(dir, "/vocab.json: no integer vocab_size");
  c.vocab_size = v.fields["vocab_size"].get<int64_t>();
  for (const auto& m : v.modalities(dir)) c.modalities.push_back({m.name, m.begin, m.end});
  return c;
}

}  // namespace

json run_evalgen(const EvalgenOptions& o) {
  const bool baseline = !o.baseline.empty();
  if (baseline == !o.model.empty()) fail("give --model, or --baseline truth|shuffled|random (not both)");
  if (o.data.empty() && baseline) fail("--baseline needs --data (the corpus)");
  const std::string dir = baseline ? o.data : tokenizer_dir(o.data, o.model);
  if (is_transfusion_corpus(dir)) return run_evalgen_transfusion(o, dir);
  if (o.eta != 0) fail("--eta is the DDIM noise of Transfusion (diffusion) models; ", dir, " is a discrete corpus");
  ModelConfig cfg;
  std::unique_ptr<Model> weights;
  if (baseline) {
    cfg = config_from_vocab(dir);
  } else {
    cfg = read_model_config(o.model);
    weights = std::make_unique<Model>(cfg, 1, 2, false);
    load_model_weights(o.model, *weights);
  }
  const PromptCodec codec(dir, cfg);
  const TokenGrammar& g = codec.grammar();
  evalgen_detail::HeldOut held = evalgen_detail::open_held_out(dir, o.n);
  const std::vector<HeldOutScene>& scenes = held.scenes;
  const size_t N = scenes.size();
  const data::Shard& gen_shard = held.gen;
  const data::Shard& cap_shard = held.cap;
  const bool speech = g.has_speech() && fs::exists(dir + "/val-asr.shard");

  GenerationOptions go;
  go.sampling.temperature = o.temperature;
  go.sampling.top_k = o.top_k;
  go.sampling.top_p = o.top_p;
  go.cfg = o.cfg < 0 ? 0.0 : o.cfg;  // the discrete setting's default: no guidance
  go.seed = o.seed;
  go.precision = parse_precision(o.dtype, "--dtype");
  validate_sampling(go.sampling);
  const Runner runner{o, cfg, codec, weights.get(), go};
  const auto t0 = std::chrono::steady_clock::now();

  // The scene whose corpus answer a baseline gives for scene i.
  auto source = [&](size_t i) { return o.baseline == "shuffled" ? (i + 1) % N : i; };
  Rng rng(o.seed ^ 0x5eedba5e11eull);
  const int im = cfg.modality_index("image");
  auto random_text = [&] {
    std::vector<int32_t> t;
    const auto& ranges = g.allowed(TokenGrammar::State{});
    while (t.size() < 16) {
      const TokenRange r = ranges[rng.below(ranges.size())];
      const int32_t id = r.begin + static_cast<int32_t>(rng.below(static_cast<uint64_t>(r.end - r.begin)));
      if (id != g.eos && id != g.boi && id != g.bos_speech) t.push_back(id);
    }
    return t;
  };

  // 1. captions -> images
  std::vector<std::vector<int32_t>> image_tokens;
  if (!baseline) {
    std::vector<GenerationRequest> reqs;
    for (const auto& s : scenes) reqs.push_back({codec.text_prompt(s.caption), GenTarget::image});
    image_tokens = runner.run(reqs, 0, g.tokens_per_image + 1);
  } else {
    for (size_t i = 0; i < N; ++i) {
      if (o.baseline == "random") {
        std::vector<int32_t> t = {g.boi};
        for (int32_t c : random_tokens(rng, static_cast<int32_t>(cfg.modalities[im].begin),
                                       static_cast<int32_t>(cfg.modalities[im].end), g.tokens_per_image))
          t.push_back(c);
        t.push_back(g.eoi);
        image_tokens.push_back(t);
      } else {
        image_tokens.push_back(doc_span(gen_shard, source(i), g.boi, g.eoi));
      }
    }
  }
  std::vector<data::Image> images, truth;
  std::vector<std::string> prompts;
  for (size_t i = 0; i < N; ++i) {
    truth.push_back(codec.decode(doc_span(gen_shard, i, g.boi, g.eoi)).images.at(0));
    const PromptCodec::Decoded d = codec.decode(image_tokens[i]);
    // An image target always completes; a black image (nothing found) if it did not.
    images.push_back(d.images.empty() ? data::Image(truth.back().width, truth.back().height) : d.images[0]);
    prompts.push_back(scenes[i].caption);
  }
  const ImageScores is = score_images(prompts, images);

  // 2. images -> captions, 3. speech -> text
  auto captions_for = [&](const data::Shard* shard, int32_t marker, uint64_t offset) {
    std::vector<std::string> out;
    if (!baseline) {
      std::vector<GenerationRequest> reqs;
      for (size_t i = 0; i < N; ++i) reqs.push_back({doc_prefix(*shard, i, marker, "val shard"), GenTarget::text});
      // Captions of the corpus are a few dozen tokens; 64 leaves room for a longer one.
      for (const auto& t : runner.run(reqs, offset, 64)) out.push_back(codec.decode(t).text);
    } else {
      for (size_t i = 0; i < N; ++i)
        out.push_back(o.baseline == "random" ? codec.decode(random_text()).text : scenes[source(i)].caption);
    }
    return out;
  };
  const std::vector<std::string> captions = captions_for(&cap_shard, g.eoi, 1u << 20);
  const CaptionScores cs = score_captions(captions, scenes);
  std::vector<std::string> transcripts;
  CaptionScores ss;
  if (speech) {
    const data::Shard asr = data::Shard::open(dir + "/val-asr.shard");
    if (asr.n_docs() < N) fail(dir, "/val-asr.shard: fewer documents than held-out scenes");
    transcripts = captions_for(&asr, g.eos_speech, 2u << 20);
    ss = score_captions(transcripts, scenes);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  json j = {{"n", N},
            {"model", baseline ? json(nullptr) : json(o.model)},
            {"baseline", baseline ? json(o.baseline) : json(nullptr)},
            {"sampling", {{"temperature", o.temperature}, {"top_k", o.top_k}, {"top_p", o.top_p}, {"cfg", go.cfg},
                          {"seed", o.seed}}},
            {"seconds", secs}};
  evalgen_detail::add_flat(j, "image", is.to_json());
  evalgen_detail::add_flat(j, "caption", cs.to_json());
  if (speech) evalgen_detail::add_flat(j, "speech", ss.to_json());

  if (!o.out.empty()) evalgen_detail::write_outputs(o.out, scenes, truth, images, captions, speech ? &transcripts : nullptr, j);
  return j;
}

}  // namespace mot
