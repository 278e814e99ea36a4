// `mot generate` (SPEC section 4): samples continuations of prompts with a KV cache and
// writes DIR/NNN.txt (the generated text), NNN.png / NNN.wav (generated images and
// speech) and DIR/generations.jsonl (one object per generation: index, prompt, target,
// tokens, text, files, finished).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/cli/commands.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/generate/generator.hpp"
#include "mot/generate/prompts.hpp"
#include "mot/generate/transfusion_codec.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"

namespace mot::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct GenerateOpts {
  std::string model, data, prompt, prompt_image, prompt_audio, prompt_file, modality, out, dtype = "fp32";
  int64_t n = 1, max_tokens = 0, top_k = 0, steps = 0, threads = 0;
  double temperature = 1.0, top_p = 1.0, cfg = 0.0, eta = 0.0;
  uint64_t seed = 0;
  bool no_kv_cache = false;
  bool cfg_given = false;
};

struct PromptItem {
  std::string shown;  // what generations.jsonl records as the prompt
  std::vector<int32_t> tokens;
  GenTarget target = GenTarget::text;
};

// --prompt-file: one JSON object per line with "prompt" (text), "image" (PNG) or
// "audio" (WAV) and optionally "modality"; relative paths are relative to the file.
std::vector<PromptItem> read_prompt_file(const std::string& path, const PromptCodec& codec, const std::string& modality) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open the prompt file");
  const fs::path base = fs::path(path).parent_path();
  std::vector<PromptItem> items;
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      fail(path, ":", no, ": not a JSON object");
    }
    if (!j.is_object()) fail(path, ":", no, ": not a JSON object");
    auto str = [&](const char* key) -> std::string {
      if (!j.contains(key)) return "";
      if (!j[key].is_string()) fail(path, ":", no, ": '", key, "' is not a string");
      return j[key].get<std::string>();
    };
    auto file = [&](const std::string& p) { return fs::path(p).is_absolute() || base.empty() ? p : (base / p).string(); };
    PromptItem it;
    const std::string text = str("prompt"), image = str("image"), audio = str("audio");
    if ((!text.empty()) + (!image.empty()) + (!audio.empty()) != 1)
      fail(path, ":", no, ": give exactly one of \"prompt\", \"image\" or \"audio\"");
    try {
      if (!text.empty()) it.tokens = codec.text_prompt(text), it.shown = text;
      if (!image.empty()) it.tokens = codec.image_prompt(file(image)), it.shown = image;
      if (!audio.empty()) it.tokens = codec.audio_prompt(file(audio)), it.shown = audio;
    } catch (const Error& e) {
      fail(path, ":", no, ": ", e.what());
    }
    const std::string m = str("modality");
    it.target = parse_target(m.empty() ? (modality.empty() ? "text" : modality) : m);
    items.push_back(std::move(it));
  }
  if (items.empty()) fail(path, ": no prompts in the file");
  return items;
}

std::vector<PromptItem> read_prompts(const GenerateOpts& o, const PromptCodec& codec) {
  const int given = !o.prompt.empty() + !o.prompt_image.empty() + !o.prompt_audio.empty() + !o.prompt_file.empty();
  if (given != 1) fail("give exactly one of --prompt, --prompt-image, --prompt-audio or --prompt-file");
  if (!o.prompt_file.empty()) return read_prompt_file(o.prompt_file, codec, o.modality);
  PromptItem it;
  it.target = parse_target(o.modality.empty() ? "text" : o.modality);
  if (!o.prompt.empty()) it.tokens = codec.text_prompt(o.prompt), it.shown = o.prompt;
  if (!o.prompt_image.empty()) it.tokens = codec.image_prompt(o.prompt_image), it.shown = o.prompt_image;
  if (!o.prompt_audio.empty()) it.tokens = codec.audio_prompt(o.prompt_audio), it.shown = o.prompt_audio;
  return {it};
}

// Transfusion models (SPEC 2b): caption prompts -> images by DDIM with guidance; image
// prompts -> captions.
int run_generate_transfusion(const GenerateOpts& o, const ModelConfig& c) {
  const TransfusionCodec codec(tokenizer_dir(o.data, o.model), c);
  struct Item {
    std::string shown;
    std::vector<int32_t> prompt;  // image targets: the caption prompt
    std::vector<float> image;     // text targets: the image to caption
    bool to_image = false;
  };
  std::vector<Item> items;
  const auto add = [&](const std::string& text, const std::string& png, std::string modality) {
    Item it;
    if (!text.empty()) {
      if (modality.empty()) modality = "image";
      if (modality != "image")
        fail("a text prompt to a Transfusion model generates an image (--modality image); text continuation is not "
             "supported yet");
      it.prompt = codec.text_prompt(text);
      it.shown = text;
      it.to_image = true;
    } else {
      if (!modality.empty() && modality != "text") fail("an image prompt to a Transfusion model generates its caption (--modality text)");
      it.image = codec.image_latents(png);
      it.shown = png;
    }
    for (int64_t j = 0; j < o.n; ++j) items.push_back(it);
  };
  const int given = !o.prompt.empty() + !o.prompt_image.empty() + !o.prompt_audio.empty() + !o.prompt_file.empty();
  if (given != 1) fail("give exactly one of --prompt, --prompt-image or --prompt-file");
  if (!o.prompt_audio.empty()) fail("--prompt-audio: the model has no speech modality");
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file);
    if (!in) fail(o.prompt_file, ": cannot open the prompt file");
    const fs::path base = fs::path(o.prompt_file).parent_path();
    std::string line;
    for (int64_t no = 1; std::getline(in, line); ++no) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      if (!j.is_object()) fail(o.prompt_file, ":", no, ": not a JSON object");
      const std::string text = j.value("prompt", std::string()), image = j.value("image", std::string());
      if (text.empty() == image.empty()) fail(o.prompt_file, ":", no, ": give exactly one of \"prompt\" or \"image\"");
      const std::string png = image.empty() || fs::path(image).is_absolute() || base.empty() ? image : (base / image).string();
      try {
        add(text, png, j.value("modality", o.modality));
      } catch (const Error& e) {
        fail(o.prompt_file, ":", no, ": ", e.what());
      }
    }
    if (items.empty()) fail(o.prompt_file, ": no prompts in the file");
  } else {
    add(o.prompt, o.prompt_image, o.modality);
  }
  DiffusionSampling ds;
  ds.steps = o.steps > 0 ? o.steps : 50;
  ds.cfg = o.cfg_given ? o.cfg : 3.0;
  ds.eta = o.eta;
  ds.seed = o.seed;
  ds.kv_cache = !o.no_kv_cache;
  ds.precision = parse_precision(o.dtype, "--dtype");
  ds.text.temperature = o.temperature;
  ds.text.top_k = o.top_k;
  ds.text.top_p = o.top_p;
  ds.max_tokens = o.max_tokens > 0 ? o.max_tokens : 64;
  validate_sampling(ds.text);
  Model weights(c, 1, 2, false);
  load_model_weights(o.model, weights);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> images;
  for (const auto& it : items) {
    if (it.to_image) prompts.push_back(it.prompt);
    else images.push_back(it.image);
  }
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) fail(o.out, ": cannot create the output directory: ", ec.message());
  const auto t0 = std::chrono::steady_clock::now();
  const auto made = prompts.empty() ? std::vector<std::vector<float>>{} : sample_images(c, weights.params(), codec.tokens(), prompts, ds);
  const auto caps = images.empty() ? std::vector<CaptionResult>{} : caption_images(c, weights.params(), codec.tokens(), images, ds);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string lines;
  size_t ni = 0, nc = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    char stem[32];
    std::snprintf(stem, sizeof stem, "%03zu", i);
    const std::string base = (fs::path(o.out) / stem).string();
    json j = {{"index", i}, {"prompt", items[i].shown}};
    std::string text;
    json files = json::array();
    if (items[i].to_image) {
      data::write_png(base + ".png", codec.to_image(made[ni++]));
      text = "<image>";
      files.push_back(std::string(stem) + ".png");
      j["target"] = "image";
      j["steps"] = ds.steps;
      j["cfg"] = ds.cfg;
      j["eta"] = ds.eta;
      j["finished"] = true;
    } else {
      const CaptionResult& r = caps[nc++];
      text = codec.decode_text(r.tokens);
      j["target"] = "text";
      j["tokens"] = r.tokens;
      j["finished"] = r.finished;
    }
    io::write_file_atomic(base + ".txt", text + "\n");
    files.insert(files.begin(), std::string(stem) + ".txt");
    j["text"] = text;
    j["files"] = files;
    lines += j.dump() + "\n";
    std::printf("%s: %s\n", stem, text.c_str());
  }
  io::write_file_atomic((fs::path(o.out) / "generations.jsonl").string(), lines);
  std::fprintf(stderr, "generated %zu images (%lld DDIM steps, eta %g, cfg %g) and %zu captions in %.2f s (%s); wrote %s\n",
               made.size(), static_cast<long long>(ds.steps), ds.eta, ds.cfg, caps.size(), secs,
               ds.kv_cache ? "KV cache" : "no KV cache", (fs::path(o.out) / "generations.jsonl").c_str());
  return 0;
}

int run_generate(const GenerateOpts& o) {
  set_threads(static_cast<int>(o.threads));
  const ModelConfig c = read_model_config(o.model);
  if (c.has_continuous()) return run_generate_transfusion(o, c);
  if (o.steps > 0) fail("--steps is the sampler step count of Transfusion (diffusion) models; ", o.model, " is discrete");
  if (o.eta != 0) fail("--eta is the DDIM noise of Transfusion (diffusion) models; ", o.model, " is discrete");
  const PromptCodec codec(tokenizer_dir(o.data, o.model), c);
  const std::vector<PromptItem> items = read_prompts(o, codec);

  GenerationOptions go;
  go.sampling.temperature = o.temperature;
  go.sampling.top_k = o.top_k;
  go.sampling.top_p = o.top_p;
  go.max_tokens = o.max_tokens;
  go.cfg = o.cfg;
  go.seed = o.seed;
  go.kv_cache = !o.no_kv_cache;
  go.precision = parse_precision(o.dtype, "--dtype");
  validate_sampling(go.sampling);

  // The weights, once (a model of one position holds them; the generator sizes its own).
  Model weights(c, 1, 2, false);
  load_model_weights(o.model, weights);

  std::vector<GenerationRequest> reqs;
  for (const auto& it : items)
    for (int64_t j = 0; j < o.n; ++j) reqs.push_back({it.tokens, it.target});
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) fail(o.out, ": cannot create the output directory: ", ec.message());

  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Generation> gens = generate(c, weights.params(), weights.moe_thresholds(), codec.grammar(), reqs, go);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::string lines;
  int64_t new_tokens = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    const PromptItem& it = items[i / static_cast<size_t>(o.n)];
    char stem[32];
    std::snprintf(stem, sizeof stem, "%03zu", i);
    const std::string base = (fs::path(o.out) / stem).string();
    PromptCodec::Written w = codec.write_outputs(gens[i].tokens, base);
    io::write_file_atomic(base + ".txt", w.text + "\n");
    w.files.insert(w.files.begin(), base + ".txt");
    json files = json::array();
    for (const auto& f : w.files) files.push_back(fs::path(f).filename().string());
    const json j = {{"index", i}, {"prompt", it.shown}, {"target", target_name(reqs[i].target)},
                    {"tokens", gens[i].tokens}, {"text", w.text}, {"files", files}, {"finished", gens[i].finished}};
    lines += j.dump() + "\n";
    new_tokens += static_cast<int64_t>(gens[i].tokens.size());
    std::printf("%s: %s\n", stem, w.text.c_str());
  }
  io::write_file_atomic((fs::path(o.out) / "generations.jsonl").string(), lines);
  std::fprintf(stderr, "generated %zu sequences, %lld tokens in %.2f s (%.1f tokens/s, %s); wrote %s\n", gens.size(),
               static_cast<long long>(new_tokens), secs, secs > 0 ? new_tokens / secs : 0.0,
               go.kv_cache ? "KV cache" : "no KV cache", (fs::path(o.out) / "generations.jsonl").c_str());
  return 0;
}

}  // namespace

void register_generate(CLI::App& app, Action& action) {
  auto o = std::make_shared<GenerateOpts>();
  auto* sub = app.add_subcommand("generate", "Sample continuations of prompts (text, image, speech) with a KV cache");
  sub->add_option("--model", o->model, "model .safetensors")->required();
  sub->add_option("--data", o->data, "data directory with the tokenizers (default: the one the run trained on)");
  sub->add_option("--prompt", o->prompt, "a text prompt");
  sub->add_option("--prompt-image", o->prompt_image, "a PNG prompt (the corpus's image size), e.g. to caption it");
  sub->add_option("--prompt-audio", o->prompt_audio, "a WAV prompt, e.g. to transcribe it");
  sub->add_option("--prompt-file", o->prompt_file,
                  "JSONL, one object per line: {\"prompt\": TEXT} | {\"image\": PNG} | {\"audio\": WAV}, "
                  "optionally \"modality\"");
  sub->add_option("--modality", o->modality, "what to generate: text (until <eos>), image or speech (default text)")
      ->check(CLI::IsMember({"text", "image", "speech"}));
  sub->add_option("--n", o->n, "samples per prompt")->check(int_range(1, 4096));
  sub->add_option("--max-tokens", o->max_tokens,
                  "new tokens per sample at most (default: text 128, an image's codes + <eoi>, speech 500)")
      ->check(positive_int());
  sub->add_option("--temperature", o->temperature, "softmax temperature (0: greedy; default 1)");
  sub->add_option("--top-k", o->top_k, "sample among the k most likely tokens (0: all)")->check(non_negative_int());
  sub->add_option("--top-p", o->top_p, "nucleus sampling: the smallest set with probability >= p, in (0, 1]");
  sub->add_option("--cfg", o->cfg, "classifier-free guidance weight for images (0: off; z_u + w (z_c - z_u)); Transfusion default 3");
  sub->add_option("--steps", o->steps, "DDIM steps (Transfusion models only; default 50)")->check(positive_int());
  sub->add_option("--eta", o->eta, "DDIM's eta (Transfusion models only; 0: deterministic DDIM, the default; 1: DDPM-like, "
                  "fresh noise every step, kinder to small models)")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--seed", o->seed, "sampling seed");
  sub->add_flag("--no-kv-cache", o->no_kv_cache, "recompute the whole prefix every step (same tokens, slower)");
  sub->add_option("--out", o->out, "output directory")->required();
  sub->add_option("--threads", o->threads, "threads (0: all cores)")->check(int_range(0, 4096));
  sub->add_option("--dtype", o->dtype, "GEMM compute precision")->check(CLI::IsMember({"fp32", "bf16"}));
  sub->callback([o, sub, &action] {
    o->cfg_given = sub->get_option("--cfg")->count() > 0;
    action = [o] { return run_generate(*o); };
  });
}

}  // namespace mot::cli
