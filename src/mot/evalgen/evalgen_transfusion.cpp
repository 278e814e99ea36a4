#include "mot/evalgen/evalgen_transfusion.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/data/format/vocab.hpp"
#include "mot/data/media/latents.hpp"
#include "mot/evalgen/evalgen_output.hpp"
#include "mot/evalgen/scores.hpp"
#include "mot/generate/diffusion_sampler.hpp"
#include "mot/generate/transfusion_codec.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"

namespace mot {

namespace {

using nlohmann::json;

// A baseline has no model: the corpus's vocabulary stands in for its config.
ModelConfig config_from_vocab(const std::string& dir) {
  const data::Vocab v = data::Vocab::read(dir, "not a corpus made by `mot data synth`");
  try {
    json m = {{"arch", "dense"}, {"dim", 2}, {"n_layers", 1}, {"n_heads", 1}, {"ffn_hidden", 2},
              {"vocab_size", v.fields.at("vocab_size")}, {"modalities", v.fields.at("modalities")}};
    return ModelConfig::from_json(m, dir + "/vocab.json");
  } catch (const json::exception&) {
    fail(dir, "/vocab.json: no vocab_size or modalities");
  }
}

// The held-out image of document i of a val shard (its first image), as latents.
std::vector<float> doc_image(const data::Shard& s, size_t i, const std::string& name) {
  const size_t k = s.first_image_at_or_after(s.doc_offset(i));
  if (k >= s.n_images() || s.image_start(k) >= s.doc_offset(i + 1))
    fail(name, ": document ", i, " has no image (not a Transfusion corpus made by `mot data synth`)");
  std::vector<float> z;
  data::append_patch_latents(s.image_pixels(k), z);
  return z;
}

}  // namespace

bool is_transfusion_corpus(const std::string& dir) {
  if (!data::Vocab::exists(dir)) return false;
  const json& f = data::Vocab::read(dir, "").fields;
  if (!f.contains("modalities") || !f["modalities"].is_array()) return false;
  for (const auto& m : f["modalities"])
    if (m.is_object() && m.value("kind", "") == "continuous") return true;
  return false;
}

json run_evalgen_transfusion(const EvalgenOptions& o, const std::string& dir) {
  const bool baseline = !o.baseline.empty();
  ModelConfig cfg;
  std::unique_ptr<Model> weights;
  if (baseline) {
    cfg = config_from_vocab(dir);
  } else {
    cfg = read_model_config(o.model);
    if (!cfg.has_continuous())
      fail(o.model, ": a discrete model, but ", dir, " is a Transfusion corpus (images as pixels); pass its own --data");
    weights = std::make_unique<Model>(cfg, 1, 2, false);
    load_model_weights(o.model, *weights);
  }
  if (!cfg.has_continuous()) fail(dir, "/vocab.json: no continuous image modality");
  const TransfusionCodec codec(dir, cfg);
  const TransfusionTokens& tok = codec.tokens();
  evalgen_detail::HeldOut held = evalgen_detail::open_held_out(dir, o.n);
  const std::vector<HeldOutScene>& scenes = held.scenes;
  const size_t N = scenes.size();
  const data::Shard& gen_shard = held.gen;
  const data::Shard& cap_shard = held.cap;

  DiffusionSampling ds;
  ds.steps = o.steps;
  ds.cfg = o.cfg < 0 ? 3.0 : o.cfg;  // SPEC 2b's default guidance
  ds.eta = o.eta;
  ds.precision = parse_precision(o.dtype, "--dtype");
  ds.text.temperature = o.temperature;
  ds.text.top_k = o.top_k;
  ds.text.top_p = o.top_p;
  ds.max_tokens = 64;  // captions of the corpus are a few dozen tokens
  validate_sampling(ds.text);
  if (ds.steps < 1 || ds.steps > cfg.diffusion_steps)
    fail("--steps ", ds.steps, " is outside [1, ", cfg.diffusion_steps, "]");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = o.batch;
  auto source = [&](size_t i) { return o.baseline == "shuffled" ? (i + 1) % N : i; };
  Rng rng(o.seed ^ 0x5eedba5e11eull);

  // 1. captions -> images (the truth: each scene's own held-out image)
  std::vector<std::vector<float>> truth_z, gen_z;
  for (size_t i = 0; i < N; ++i) truth_z.push_back(doc_image(gen_shard, i, dir + "/val-gen.shard"));
  if (!baseline) {
    for (size_t b = 0; b < N; b += static_cast<size_t>(B)) {
      std::vector<std::vector<int32_t>> prompts;
      for (size_t i = b; i < std::min(N, b + static_cast<size_t>(B)); ++i) prompts.push_back(codec.text_prompt(scenes[i].caption));
      DiffusionSampling d = ds;
      d.seed = o.seed * 1000003 + b;
      for (auto& z : sample_images(cfg, weights->params(), tok, prompts, d)) gen_z.push_back(std::move(z));
    }
  } else {
    for (size_t i = 0; i < N; ++i) {
      if (o.baseline == "random") {
        std::vector<float> z(truth_z[i].size());
        for (float& v : z) v = static_cast<float>(rng.uniform() * 2.0 - 1.0);
        gen_z.push_back(std::move(z));
      } else {
        gen_z.push_back(truth_z[source(i)]);
      }
    }
  }
  std::vector<data::Image> images, truth;
  std::vector<std::string> prompts;
  for (size_t i = 0; i < N; ++i) {
    truth.push_back(codec.to_image(truth_z[i]));
    images.push_back(codec.to_image(gen_z[i]));
    prompts.push_back(scenes[i].caption);
  }
  const ImageScores is = score_images(prompts, images);

  // 2. images -> captions (the clean held-out image of val-cap, τ = 0)
  std::vector<std::string> captions;
  if (!baseline) {
    for (size_t b = 0; b < N; b += static_cast<size_t>(B)) {
      std::vector<std::vector<float>> part;
      for (size_t i = b; i < std::min(N, b + static_cast<size_t>(B)); ++i)
        part.push_back(doc_image(cap_shard, i, dir + "/val-cap.shard"));
      DiffusionSampling d = ds;
      d.seed = o.seed * 1000003 + (1u << 20) + b;
      for (const auto& r : caption_images(cfg, weights->params(), tok, part, d)) captions.push_back(codec.decode_text(r.tokens));
    }
  } else {
    for (size_t i = 0; i < N; ++i) {
      if (o.baseline == "random") {
        std::vector<int32_t> t;
        while (t.size() < 16) {
          const int32_t id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(cfg.vocab_size)));
          if (id != tok.bos && id != tok.eos && id != tok.boi && id != tok.eoi) t.push_back(id);
        }
        captions.push_back(codec.decode_text(t));
      } else {
        captions.push_back(scenes[source(i)].caption);
      }
    }
  }
  const CaptionScores cs = score_captions(captions, scenes);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  json j = {{"n", N},
            {"setting", "transfusion"},
            {"model", baseline ? json(nullptr) : json(o.model)},
            {"baseline", baseline ? json(o.baseline) : json(nullptr)},
            {"sampling", {{"temperature", o.temperature}, {"top_k", o.top_k}, {"top_p", o.top_p}, {"cfg", ds.cfg},
                          {"steps", o.steps}, {"eta", ds.eta}, {"seed", o.seed}}},
            {"seconds", secs}};
  evalgen_detail::add_flat(j, "image", is.to_json());
  evalgen_detail::add_flat(j, "caption", cs.to_json());
  if (!o.out.empty()) evalgen_detail::write_outputs(o.out, scenes, truth, images, captions, nullptr, j);
  return j;
}

}  // namespace mot
