#include "mot/data/corpus.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/scene.hpp"
#include "mot/data/text_tokenizer.hpp"
#include "mot/data/vq.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::data {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

enum Kind { kGen = 0, kCap = 1, kQa = 2 };
const char* kKindNames[] = {"gen", "cap", "qa"};

void check_options(const CorpusOptions& o) {
  if (o.out.empty()) fail("--out DIR is required");
  if (o.scenes <= 0) fail("--scenes must be at least 1 (got ", o.scenes, ")");
  if (o.val_scenes <= 0) fail("--val-scenes must be at least 1 (got ", o.val_scenes, ")");
  if (o.scenes > 50'000'000 || o.val_scenes > 5'000'000) fail("--scenes is absurdly large (", o.scenes, ")");
  if (o.patch < 1 || o.patch > 64) fail("--patch must be in [1, 64] (got ", o.patch, ")");
  if (o.image_size < o.patch)
    fail("--image-size ", o.image_size, " is smaller than one patch (", o.patch, " pixels)");
  if (o.image_size > 512) fail("--image-size must be at most 512 (got ", o.image_size, ")");
  if (o.image_size % o.patch) fail("--image-size ", o.image_size, " is not a multiple of --patch ", o.patch);
  if (o.image_size < 16) fail("--image-size must be at least 16 pixels for shapes to be recognisable");
  if (o.codebook < 2 || o.codebook > 65536) fail("--codebook must be in [2, 65536] (got ", o.codebook, ")");
  if (o.text_vocab < 128 || o.text_vocab > 65536) fail("--text-vocab must be in [128, 65536] (got ", o.text_vocab, ")");
  if (o.max_objects < 1 || o.max_objects > 3) fail("--max-objects must be 1, 2 or 3");
  if (o.mix_gen < 0 || o.mix_cap < 0 || o.mix_qa < 0 || o.mix_gen + o.mix_cap + o.mix_qa <= 0)
    fail("--mix weights must be >= 0 with a positive sum");
}

// Held-out split by content: the sorted (shape, colour) pairs of a scene.
bool is_val_scene(const Scene& s) {
  std::vector<int> key;
  for (const auto& o : s.objects) key.push_back(o.shape * 64 + o.color);
  std::sort(key.begin(), key.end());
  uint64_t h = 1469598103934665603ull;
  for (int k : key) h = (h ^ static_cast<uint64_t>(k + 1)) * 1099511628211ull;
  return (h >> 7) % 10 == 0;
}

struct Doc {
  Scene scene;
  int kind = kGen;
  std::string text;  // caption or qa text
  size_t image = 0;  // index into the image list
};

void progress(const CorpusOptions& o, const std::string& msg) {
  if (!o.quiet) std::fprintf(stderr, "synth: %s\n", msg.c_str());
}

void prepare_out_dir(const CorpusOptions& o) {
  std::error_code ec;
  if (fs::exists(o.out, ec)) {
    if (!fs::is_directory(o.out, ec)) fail(o.out, ": exists and is not a directory");
    if (!fs::is_empty(o.out, ec) && !o.force)
      fail(o.out, ": directory is not empty (pass --force to overwrite the corpus in it)");
  }
  fs::create_directories(o.out, ec);
  if (ec) fail(o.out, ": cannot create directory: ", ec.message());
  const std::string probe = o.out + "/.write-test";
  std::ofstream f(probe);
  if (!f) fail(o.out, ": directory is not writable");
  f.close();
  fs::remove(probe, ec);
}

}  // namespace

void synth_corpus(const CorpusOptions& o) {
  check_options(o);
  prepare_out_dir(o);
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  // 1. Scenes: training scenes and held-out validation scenes, by content.
  Rng rng(o.seed * 0x9e3779b97f4a7c15ull + 17);
  std::vector<Doc> train, val;
  const double mix_sum = o.mix_gen + o.mix_cap + o.mix_qa;
  int64_t attempts = 0;
  while (static_cast<int64_t>(train.size()) < o.scenes || static_cast<int64_t>(val.size()) < o.val_scenes) {
    if (++attempts > 100 * (o.scenes + o.val_scenes) + 100000) fail("synth: cannot draw enough distinct scenes");
    Doc d;
    d.scene = random_scene(rng, o.max_objects);
    const bool v = is_val_scene(d.scene);
    if (v && static_cast<int64_t>(val.size()) >= o.val_scenes) continue;
    if (!v && static_cast<int64_t>(train.size()) >= o.scenes) continue;
    const double u = rng.uniform() * mix_sum;
    d.kind = u < o.mix_gen ? kGen : (u < o.mix_gen + o.mix_cap ? kCap : kQa);
    d.text = d.kind == kQa ? qa_text(d.scene, rng) : caption(d.scene, rng);
    (v ? val : train).push_back(std::move(d));
  }
  // Validation scenes serve every kind, so per-direction losses compare like with like.
  std::vector<std::string> val_caption(val.size()), val_qa(val.size());
  for (size_t i = 0; i < val.size(); ++i) {
    val_caption[i] = caption(val[i].scene, rng);
    val_qa[i] = qa_text(val[i].scene, rng);
  }
  progress(o, cat(train.size(), " training and ", val.size(), " held-out scenes (", secs(), " s)"));

  // 2. Images and the VQ codebook (learned on training images only).
  std::vector<Image> train_images, val_images;
  for (auto& d : train)
    if (d.kind != kQa) {
      d.image = train_images.size();
      train_images.push_back(render_scene(d.scene, o.image_size));
    }
  for (auto& d : val) {
    d.image = val_images.size();
    val_images.push_back(render_scene(d.scene, o.image_size));
  }
  if (train_images.empty()) fail("synth: the mixture produced no images (raise --mix gen or cap)");
  const size_t patches_per_image = static_cast<size_t>(o.image_size / o.patch) * (o.image_size / o.patch);
  if (train_images.size() * patches_per_image < static_cast<size_t>(o.codebook))
    fail("synth: ", train_images.size() * patches_per_image, " image patches are too few for a codebook of ",
         o.codebook, " (raise --scenes or lower --codebook)");
  progress(o, cat("rendered ", train_images.size() + val_images.size(), " images of ", o.image_size, "x",
                  o.image_size, "; learning a ", o.codebook, "-entry VQ codebook on ", o.patch, "x", o.patch,
                  " patches"));
  const bool tty = isatty(2);
  VqCodebook vq = VqCodebook::train(train_images, o.patch, o.codebook, o.seed, o.vq_iters, 400000,
                                    [&](int it, int n, double dist) {
                                      // One line per iteration in logs; one updating line on a terminal.
                                      if (!o.quiet)
                                        std::fprintf(stderr, tty ? "\rsynth: k-means iteration %d/%d, distortion %.5f"
                                                                 : "synth: k-means iteration %d/%d, distortion %.5f\n",
                                                     it, n, dist);
                                    });
  if (!o.quiet && tty) std::fprintf(stderr, "\n");
  const double psnr_train = reconstruction_psnr(vq, std::vector<Image>(train_images.begin(),
                                                                       train_images.begin() + std::min<size_t>(train_images.size(), 2000)));
  const double psnr_val = reconstruction_psnr(vq, val_images);
  progress(o, cat("VQ reconstruction PSNR: train ", psnr_train, " dB, held-out ", psnr_val, " dB (", secs(), " s)"));

  // 3. Text tokenizer on training text.
  std::vector<std::string> texts;
  for (const auto& d : train) texts.push_back(d.text);
  TextTokenizer tok = TextTokenizer::train(texts, o.text_vocab);
  const int V_text = tok.vocab_size();
  progress(o, cat("SentencePiece BPE: ", V_text, " text pieces"));

  // 4. Token documents and shards.
  std::vector<uint32_t> train_codes(train_images.size() * patches_per_image), val_codes(val_images.size() * patches_per_image);
  vq.encode_batch(train_images, train_codes.data());
  vq.encode_batch(val_images, val_codes.data());
  const uint32_t img0 = static_cast<uint32_t>(V_text);
  auto emit = [&](int kind, const std::string& text, const uint32_t* codes, std::vector<uint32_t>& out) {
    auto text_ids = [&] {
      for (int id : tok.encode(text)) out.push_back(static_cast<uint32_t>(id));
    };
    auto image_ids = [&] {
      out.push_back(static_cast<uint32_t>(tok.boi_id()));
      for (size_t i = 0; i < patches_per_image; ++i) out.push_back(img0 + codes[i]);
      out.push_back(static_cast<uint32_t>(tok.eoi_id()));
    };
    out.push_back(static_cast<uint32_t>(tok.bos_id()));
    if (kind == kGen) { text_ids(); image_ids(); }
    else if (kind == kCap) { image_ids(); text_ids(); }
    else text_ids();
    out.push_back(static_cast<uint32_t>(tok.eos_id()));
  };
  std::vector<ModalityRange> mods = {{"text", 0, img0}, {"image", img0, img0 + static_cast<uint32_t>(o.codebook)}};
  json summary;
  auto write = [&](const std::string& name, const std::vector<std::pair<int, std::pair<const std::string*, const uint32_t*>>>& docs) {
    std::vector<uint32_t> tokens;
    std::vector<uint64_t> offsets{0};
    int64_t by_mod[2] = {0, 0}, by_kind[3] = {0, 0, 0};
    for (const auto& [kind, content] : docs) {
      emit(kind, *content.first, content.second, tokens);
      offsets.push_back(tokens.size());
      by_kind[kind]++;
    }
    for (uint32_t t : tokens) by_mod[t >= img0]++;
    write_shard(o.out + "/" + name, mods, tokens, offsets);
    summary["shards"][name] = {{"documents", docs.size()},
                               {"tokens", tokens.size()},
                               {"tokens_by_modality", {{"text", by_mod[0]}, {"image", by_mod[1]}}},
                               {"documents_by_kind", {{"gen", by_kind[0]}, {"cap", by_kind[1]}, {"qa", by_kind[2]}}}};
  };
  {
    std::vector<std::pair<int, std::pair<const std::string*, const uint32_t*>>> docs;
    for (const auto& d : train)
      docs.push_back({d.kind, {&d.text, d.kind == kQa ? nullptr : train_codes.data() + d.image * patches_per_image}});
    write("train-000.shard", docs);
  }
  for (int kind : {kGen, kCap, kQa}) {
    std::vector<std::pair<int, std::pair<const std::string*, const uint32_t*>>> docs;
    for (size_t i = 0; i < val.size(); ++i)
      docs.push_back({kind, {kind == kQa ? &val_qa[i] : &val_caption[i], val_codes.data() + val[i].image * patches_per_image}});
    write(cat("val-", kKindNames[kind], ".shard"), docs);
  }
  tok.save(o.out + "/text.model");
  vq.save(o.out + "/vq.safetensors");

  json vocab = {{"vocab_size", V_text + o.codebook},
                {"bos_id", tok.bos_id()},
                {"eos_id", tok.eos_id()},
                {"boi_id", tok.boi_id()},
                {"eoi_id", tok.eoi_id()},
                {"modalities", {{{"name", "text"}, {"begin", 0}, {"end", V_text}},
                                {{"name", "image"}, {"begin", V_text}, {"end", V_text + o.codebook}}}},
                {"image_size", o.image_size},
                {"patch", o.patch},
                {"tokens_per_image", patches_per_image}};
  io::write_file_atomic(o.out + "/vocab.json", vocab.dump(2) + "\n");
  summary["seed"] = o.seed;
  summary["vq_psnr_db"] = {{"train", psnr_train}, {"heldout", psnr_val}};
  summary["text_vocab"] = V_text;
  summary["codebook"] = o.codebook;
  io::write_file_atomic(o.out + "/summary.json", summary.dump(2) + "\n");
  progress(o, cat("wrote ", o.out, " (", secs(), " s): ", summary["shards"]["train-000.shard"]["tokens"].get<int64_t>(),
                  " training tokens"));
}

DecodedDoc decode_document(const std::string& dir, const std::vector<uint32_t>& tokens) {
  std::ifstream f(dir + "/vocab.json");
  if (!f) fail(dir, ": no vocab.json (not a corpus made by `mot data synth`)");
  json v;
  try {
    v = json::parse(f);
  } catch (const json::exception&) {
    fail(dir, "/vocab.json: not valid JSON");
  }
  const TextTokenizer tok = TextTokenizer::load(dir + "/text.model");
  const uint32_t img0 = static_cast<uint32_t>(tok.vocab_size());
  DecodedDoc d;
  std::vector<int> text;
  bool in_image = false;
  auto flush = [&] {
    if (!text.empty()) d.text += tok.decode(text);
    text.clear();
  };
  for (uint32_t t : tokens) {
    if (static_cast<int>(t) == tok.boi_id()) {
      flush();
      in_image = true;
      d.images.emplace_back();
      d.text += d.text.empty() ? "<image>" : " <image> ";
    } else if (static_cast<int>(t) == tok.eoi_id()) {
      in_image = false;
    } else if (in_image && t >= img0) {
      d.images.back().push_back(t - img0);
    } else if (t < img0) {
      text.push_back(static_cast<int>(t));
    }
  }
  flush();
  (void)v;
  return d;
}

}  // namespace mot::data
