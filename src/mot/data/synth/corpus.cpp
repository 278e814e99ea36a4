#include "mot/data/synth/corpus.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/format/data_dir.hpp"
#include "mot/data/format/vocab.hpp"
#include "mot/data/autoencoder/conv_autoencoder.hpp"
#include "mot/data/media/latent_space.hpp"
#include "mot/data/media/latents.hpp"
#include "mot/data/synth/scene.hpp"
#include "mot/data/synth/speech_corpus.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"
#include "mot/data/tokenize/vq.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::data {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

enum Kind { kGen = 0, kCap = 1, kQa = 2, kAsr = 3, kTts = 4, kSpeech = 5 };
const char* kKindNames[] = {"gen", "cap", "qa", "asr", "tts", "speech"};
bool has_image(int kind) { return kind == kGen || kind == kCap; }
bool has_speech(int kind) { return kind >= kAsr; }

void check_options(const CorpusOptions& o) {
  if (o.out.empty()) fail("--out DIR is required");
  if (o.setting != "chameleon" && o.setting != "transfusion")
    fail("--setting must be chameleon or transfusion (got '", o.setting, "')");
  if (o.setting == "transfusion" && o.speech) fail("--speech is not available with --setting transfusion");
  if (o.scenes <= 0) fail("--scenes must be at least 1 (got ", o.scenes, ")");
  if (o.val_scenes <= 0) fail("--val-scenes must be at least 1 (got ", o.val_scenes, ")");
  if (o.scenes > 50'000'000 || o.val_scenes > 5'000'000) fail("--scenes is absurdly large (", o.scenes, ")");
  if (o.patch < 1 || o.patch > 64) fail("--patch must be in [1, 64] (got ", o.patch, ")");
  if (o.image_size < o.patch)
    fail("--image-size ", o.image_size, " is smaller than one patch (", o.patch, " pixels)");
  if (o.image_size > 512) fail("--image-size must be at most 512 (got ", o.image_size, ")");
  if (o.image_size % o.patch) fail("--image-size ", o.image_size, " is not a multiple of --patch ", o.patch);
  if (o.image_size < 16) fail("--image-size must be at least 16 pixels for shapes to be recognisable");
  if (o.autoencoder) {
    if (o.setting != "transfusion") fail("--autoencoder needs --setting transfusion (its images are continuous)");
    if (o.image_size % 4) fail("--image-size ", o.image_size, " is not a multiple of 4 (the autoencoder halves it twice)");
    if (o.latent_channels < 1 || o.latent_channels > 64)
      fail("--latent-channels must be in [1, 64] (got ", o.latent_channels, ")");
    if (o.latent_patch < 1 || (o.image_size / 4) % o.latent_patch)
      fail("--latent-patch ", o.latent_patch, " does not divide the latent grid's side ", o.image_size / 4);
    if (o.autoencoder_steps < 1 || o.autoencoder_steps > 1000000)
      fail("--autoencoder-steps must be in [1, 1000000] (got ", o.autoencoder_steps, ")");
  }
  if (o.codebook < 2 || o.codebook > 65536) fail("--codebook must be in [2, 65536] (got ", o.codebook, ")");
  if (o.text_vocab < 128 || o.text_vocab > 65536) fail("--text-vocab must be in [128, 65536] (got ", o.text_vocab, ")");
  if (o.max_objects < 1 || o.max_objects > 3) fail("--max-objects must be 1, 2 or 3");
  if (o.mix_gen < 0 || o.mix_cap < 0 || o.mix_qa < 0 || o.mix_gen + o.mix_cap + o.mix_qa <= 0)
    fail("--mix weights must be >= 0 with a positive sum");
  if (o.speech) {
    if (o.mix_asr < 0 || o.mix_tts < 0 || o.mix_speech < 0 || o.mix_asr + o.mix_tts + o.mix_speech <= 0)
      fail("--mix-asr/--mix-tts/--mix-speech must be >= 0 with a positive sum");
    if (o.speech_units < 2 || o.speech_units > 65536) fail("--speech-units must be in [2, 65536] (got ", o.speech_units, ")");
    if (o.speech_iters < 1 || o.speech_iters > 1000) fail("--speech-iters must be in [1, 1000] (got ", o.speech_iters, ")");
    if (o.speech_sample_frames < o.speech_units)
      fail("--speech-sample-frames ", o.speech_sample_frames, " is below --speech-units ", o.speech_units);
  }
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
  size_t utt = 0;    // index into the spoken utterances (speech kinds)
};

void progress(const CorpusOptions& o, const std::string& msg) {
  if (!o.quiet) std::fprintf(stderr, "synth: %s\n", msg.c_str());
}

void prepare_out_dir(const CorpusOptions& o) {
  std::error_code ec;
  if (fs::exists(o.out, ec)) {
    if (!fs::is_directory(o.out, ec)) fail(o.out, ": exists and is not a directory");
    io::remove_stale_temporaries(o.out, false);  // what a killed earlier run left half-written
    if (!fs::is_empty(o.out, ec) && !o.force)
      fail(o.out, ": directory is not empty (pass --force to overwrite the corpus in it)");
  }
  create_writable_dir(o.out);
}

// Seconds since the run started, for progress lines.
struct Stopwatch {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double operator()() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

// The documents of a corpus: a scene and kind each, training and held-out (by content).
// Validation scenes serve every kind, so per-direction losses compare like with like:
// each also has a caption and a question/answer text.
struct Scenes {
  std::vector<Doc> train, val;
  std::vector<std::string> val_caption, val_qa;
};

Scenes draw_scenes(const CorpusOptions& o) {
  Rng rng(o.seed * 0x9e3779b97f4a7c15ull + 17);
  Scenes sc;
  // Without --speech the weights, sums and draws are exactly those of the text+image corpus.
  std::vector<double> mix = {o.mix_gen, o.mix_cap, o.mix_qa};
  if (o.speech) mix.insert(mix.end(), {o.mix_asr, o.mix_tts, o.mix_speech});
  double mix_sum = 0;
  for (double w : mix) mix_sum += w;
  int64_t attempts = 0;
  while (static_cast<int64_t>(sc.train.size()) < o.scenes || static_cast<int64_t>(sc.val.size()) < o.val_scenes) {
    if (++attempts > 100 * (o.scenes + o.val_scenes) + 100000) fail("synth: cannot draw enough distinct scenes");
    Doc d;
    d.scene = random_scene(rng, o.max_objects);
    const bool v = is_val_scene(d.scene);
    if (v && static_cast<int64_t>(sc.val.size()) >= o.val_scenes) continue;
    if (!v && static_cast<int64_t>(sc.train.size()) >= o.scenes) continue;
    const double u = rng.uniform() * mix_sum;
    d.kind = kQa;
    double acc = 0;
    for (size_t k = 0; k < mix.size(); ++k)
      if (mix[k] > 0 && u < (acc += mix[k])) {
        d.kind = static_cast<int>(k);
        break;
      }
    d.text = d.kind == kQa ? qa_text(d.scene, rng) : caption(d.scene, rng);
    (v ? sc.val : sc.train).push_back(std::move(d));
  }
  sc.val_caption.resize(sc.val.size());
  sc.val_qa.resize(sc.val.size());
  for (size_t i = 0; i < sc.val.size(); ++i) {
    sc.val_caption[i] = caption(sc.val[i].scene, rng);
    sc.val_qa[i] = qa_text(sc.val[i].scene, rng);
  }
  return sc;
}

// The images of the training documents that have one and of every held-out scene;
// each document's `image` indexes its list.
struct Images {
  std::vector<Image> train, val;
  size_t patches_per_image = 0;
};

Images render_images(const CorpusOptions& o, Scenes& sc) {
  Images im;
  for (auto& d : sc.train)
    if (has_image(d.kind)) {
      d.image = im.train.size();
      im.train.push_back(render_scene(d.scene, o.image_size));
    }
  for (auto& d : sc.val) {
    d.image = im.val.size();
    im.val.push_back(render_scene(d.scene, o.image_size));
  }
  if (im.train.empty()) fail("synth: the mixture produced no images (raise --mix gen or cap)");
  const int side = o.autoencoder ? o.image_size / 4 / o.latent_patch : o.image_size / o.patch;
  im.patches_per_image = static_cast<size_t>(side) * side;
  if (o.setting == "chameleon" && im.train.size() * im.patches_per_image < static_cast<size_t>(o.codebook))
    fail("synth: ", im.train.size() * im.patches_per_image, " image patches are too few for a codebook of ",
         o.codebook, " (raise --scenes or lower --codebook)");
  return im;
}

// The VQ codebook, learned on training images only.
VqCodebook learn_vq(const CorpusOptions& o, const Images& im) {
  progress(o, cat("rendered ", im.train.size() + im.val.size(), " images of ", o.image_size, "x", o.image_size,
                  "; learning a ", o.codebook, "-entry VQ codebook on ", o.patch, "x", o.patch, " patches"));
  const bool tty = isatty(2);
  VqCodebook vq = VqCodebook::train(im.train, o.patch, o.codebook, o.seed, o.vq_iters, 400000,
                                    [&](int it, int n, double dist) {
                                      // One line per iteration in logs; one updating line on a terminal.
                                      if (!o.quiet)
                                        std::fprintf(stderr, tty ? "\rsynth: k-means iteration %d/%d, distortion %.5f"
                                                                 : "synth: k-means iteration %d/%d, distortion %.5f\n",
                                                     it, n, dist);
                                    });
  if (!o.quiet && tty) std::fprintf(stderr, "\n");
  return vq;
}

struct Psnr {
  double train = 0, val = 0;
};

Psnr measure_vq(const VqCodebook& vq, const Images& im) {
  Psnr p;
  p.train = reconstruction_psnr(vq, std::vector<Image>(im.train.begin(),
                                                       im.train.begin() + std::min<size_t>(im.train.size(), 2000)));
  p.val = reconstruction_psnr(vq, im.val);
  return p;
}

// Captions spoken, the unit codebook and the units (speech_corpus.hpp); each training
// speech document's `utt` indexes its utterance.
SpeechUnits speak_captions(const CorpusOptions& o, Scenes& sc, const Stopwatch& secs) {
  std::vector<std::string> utts;
  for (auto& d : sc.train)
    if (has_speech(d.kind)) {
      d.utt = utts.size();
      utts.push_back(d.text);
    }
  progress(o, cat("speaking ", utts.size(), " training and ", sc.val_caption.size(),
                  " held-out captions with espeak-ng"));
  SpeechCorpusOptions so;
  so.units = o.speech_units;
  so.seed = o.seed;
  so.iters = o.speech_iters;
  so.sample_frames = static_cast<size_t>(o.speech_sample_frames);
  SpeechUnits speech = build_speech_units(utts, sc.val_caption, so, [&](const std::string& m) { progress(o, m); });
  const auto& r = speech.reconstruction;
  progress(o, cat("speech: ", speech.train_seconds + speech.val_seconds, " s of audio; held-out reconstruction: ",
                  "quantisation ", r.quantisation_db, " dB, total ", r.total_db, " dB (", secs(), " s)"));
  return speech;
}

// One document to emit: its kind, text, image codes (gen, cap) or, in the Transfusion
// setting, the image itself, and speech units (asr, tts, speech).
struct Item {
  int kind;
  const std::string* text;
  const uint32_t* codes;
  const std::vector<uint32_t>* units;
  const Image* image = nullptr;
  const uint8_t* latents = nullptr;  // with an autoencoder: the image's latent bytes, in latent order
};

// The Transfusion images as the autoencoder's latents, quantised to shard bytes in
// latent order (latent_space.hpp), and the reconstruction quality of those bytes.
struct LatentImages {
  std::vector<uint8_t> train, val;  // latent_values() bytes per image
  size_t per_image = 0;
  Psnr psnr;
};

std::vector<uint8_t> latent_bytes(const ConvAutoencoder& ae, const std::vector<Image>& images, int patch) {
  const AutoencoderShape& s = ae.shape();
  const size_t per = static_cast<size_t>(s.latent_values());
  const std::vector<float> grid = encode_images(ae, images);
  std::vector<uint8_t> out(images.size() * per);
  for (size_t i = 0; i < images.size(); ++i) {
    const std::vector<float> z = grid_to_latents(grid.data() + i * per, s.grid(), s.latent_channels, patch);
    for (size_t k = 0; k < per; ++k) out[i * per + k] = latent_byte(z[k]);
  }
  return out;
}

// Mean PSNR of images decoded from their latent bytes.
double latent_psnr(const ConvAutoencoder& ae, const std::vector<Image>& images, const uint8_t* bytes, int patch,
                   size_t n) {
  const AutoencoderShape& s = ae.shape();
  const size_t per = static_cast<size_t>(s.latent_values());
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> z;
    append_patch_latents({bytes + i * per, per}, z);
    const std::vector<float> grid = latents_to_grid(z.data(), s.grid(), s.latent_channels, patch);
    sum += std::min(psnr(decode_image(ae, grid.data()), images[i]), 99.0);
  }
  return n ? sum / static_cast<double>(n) : 0.0;
}

ConvAutoencoder learn_autoencoder(const CorpusOptions& o, const Images& im, LatentImages& li, const Stopwatch& secs) {
  AutoencoderShape shape;
  shape.image_size = o.image_size;
  shape.latent_channels = o.latent_channels;
  AutoencoderTraining t;
  t.steps = o.autoencoder_steps;
  t.seed = o.seed;
  progress(o, cat("rendered ", im.train.size() + im.val.size(), " images of ", o.image_size, "x", o.image_size,
                  "; training an autoencoder to ", shape.grid(), "x", shape.grid(), "x", shape.latent_channels,
                  " latents (", t.steps, " steps of ", t.batch, " images)"));
  const bool tty = isatty(2);
  ConvAutoencoder ae = train_autoencoder(im.train, shape, t, [&](int step, double loss) {
    if (!o.quiet)
      std::fprintf(stderr, tty ? "\rsynth: autoencoder step %d/%d, loss %.5f" : "synth: autoencoder step %d/%d, loss %.5f\n",
                   step, t.steps, loss);
  });
  if (!o.quiet && tty) std::fprintf(stderr, "\n");
  li.train = latent_bytes(ae, im.train, o.latent_patch);
  li.val = latent_bytes(ae, im.val, o.latent_patch);
  li.per_image = static_cast<size_t>(shape.latent_values());
  li.psnr.train = latent_psnr(ae, im.train, li.train.data(), o.latent_patch, std::min<size_t>(im.train.size(), 2000));
  li.psnr.val = latent_psnr(ae, im.val, li.val.data(), o.latent_patch, im.val.size());
  progress(o, cat("autoencoder reconstruction PSNR: train ", li.psnr.train, " dB, held-out ", li.psnr.val, " dB (",
                  secs(), " s); images are diffused as ", im.patches_per_image, " latent tiles of ", o.latent_patch, "x",
                  o.latent_patch, "x", o.latent_channels));
  return ae;
}

// Writes the token documents as shards (train-000.shard, val-KIND.shard): text ids,
// then the image codes, then the speech units, each medium bracketed by its markers.
// Returns the summary's "shards" entries.
class ShardWriter {
 public:
  ShardWriter(const CorpusOptions& o, const TextTokenizer& tok, size_t patches_per_image)
      : o_(o), tok_(tok), patches_(patches_per_image), img0_(static_cast<uint32_t>(tok.vocab_size())),
        sp0_(img0_ + static_cast<uint32_t>(o.codebook)), pixels_(o.setting == "transfusion") {
    // speech units follow the image codes; Transfusion images have no ids
    mods_ = {{"text", 0, img0_}};
    if (!pixels_) mods_.push_back({"image", img0_, sp0_});
    if (o.speech) mods_.push_back({"speech", sp0_, sp0_ + static_cast<uint32_t>(o.speech_units)});
  }

  void write(const std::string& name, const std::vector<Item>& docs, json& summary) const {
    std::vector<uint32_t> tokens;
    std::vector<uint64_t> offsets{0};
    int64_t by_mod[3] = {0, 0, 0}, by_kind[6] = {0, 0, 0, 0, 0, 0};
    ShardImages images = o_.autoencoder
                             ? ShardImages{"image", static_cast<uint32_t>(o_.image_size / 4),
                                           static_cast<uint32_t>(o_.latent_channels),
                                           static_cast<uint32_t>(o_.latent_patch), {}, {}}
                             : ShardImages{"image", static_cast<uint32_t>(o_.image_size), 3,
                                           static_cast<uint32_t>(o_.patch), {}, {}};
    for (const Item& it : docs) {
      emit(it, tokens, images);
      offsets.push_back(tokens.size());
      by_kind[it.kind]++;
    }
    for (uint32_t t : tokens) by_mod[t >= sp0_ ? 2 : (t >= img0_ ? 1 : 0)]++;
    if (pixels_) {  // image positions hold token 0: count them as image, not text
      by_mod[1] = static_cast<int64_t>(images.starts.size() * patches_);
      by_mod[0] -= by_mod[1];
    }
    write_shard(o_.out + "/" + name, mods_, tokens, offsets, pixels_ ? &images : nullptr);
    json& s = summary["shards"][name];
    s = {{"documents", docs.size()},
         {"tokens", tokens.size()},
         {"tokens_by_modality", {{"text", by_mod[0]}, {"image", by_mod[1]}}},
         {"documents_by_kind", {{"gen", by_kind[0]}, {"cap", by_kind[1]}, {"qa", by_kind[2]}}}};
    if (o_.speech) {
      s["tokens_by_modality"]["speech"] = by_mod[2];
      for (int k : {kAsr, kTts, kSpeech}) s["documents_by_kind"][kKindNames[k]] = by_kind[k];
    }
  }

 private:
  void emit(const Item& it, std::vector<uint32_t>& out, ShardImages& images) const {
    auto text_ids = [&] {
      for (int id : tok_.encode(*it.text)) out.push_back(static_cast<uint32_t>(id));
    };
    auto image_ids = [&] {
      out.push_back(static_cast<uint32_t>(tok_.boi_id()));
      if (pixels_) {
        images.starts.push_back(out.size());
        out.insert(out.end(), patches_, 0u);
        if (it.latents) {
          const size_t n = static_cast<size_t>(o_.image_size / 4) * (o_.image_size / 4) * o_.latent_channels;
          images.pixels.insert(images.pixels.end(), it.latents, it.latents + n);
        } else {
          const auto px = image_to_patch_bytes(*it.image, o_.image_size, o_.patch);
          images.pixels.insert(images.pixels.end(), px.begin(), px.end());
        }
      } else {
        for (size_t i = 0; i < patches_; ++i) out.push_back(img0_ + it.codes[i]);
      }
      out.push_back(static_cast<uint32_t>(tok_.eoi_id()));
    };
    auto speech_ids = [&] {
      out.push_back(static_cast<uint32_t>(tok_.bos_speech_id()));
      for (uint32_t u : *it.units) out.push_back(sp0_ + u);
      out.push_back(static_cast<uint32_t>(tok_.eos_speech_id()));
    };
    out.push_back(static_cast<uint32_t>(tok_.bos_id()));
    if (it.kind == kGen) { text_ids(); image_ids(); }
    else if (it.kind == kCap) { image_ids(); text_ids(); }
    else if (it.kind == kAsr) { speech_ids(); text_ids(); }
    else if (it.kind == kTts) { text_ids(); speech_ids(); }
    else if (it.kind == kSpeech) speech_ids();
    else text_ids();
    out.push_back(static_cast<uint32_t>(tok_.eos_id()));
  }

  const CorpusOptions& o_;
  const TextTokenizer& tok_;
  size_t patches_;
  uint32_t img0_, sp0_;
  bool pixels_;  // Transfusion: images as pixels in the shard's image section
  std::vector<ModalityRange> mods_;
};

// train-000.shard, then one val-KIND.shard per kind over every held-out scene.
json write_shards(const CorpusOptions& o, const Scenes& sc, const Images& im, const VqCodebook& vq,
                  const LatentImages& li, const SpeechUnits& speech, const TextTokenizer& tok) {
  const size_t ppi = im.patches_per_image;
  const bool pixels = o.setting == "transfusion";
  std::vector<uint32_t> train_codes(pixels ? 0 : im.train.size() * ppi), val_codes(pixels ? 0 : im.val.size() * ppi);
  if (!pixels) {
    vq.encode_batch(im.train, train_codes.data());
    vq.encode_batch(im.val, val_codes.data());
  }
  // The image of a document: its codes, or (Transfusion) its pixels.
  auto codes = [&](const std::vector<uint32_t>& all, size_t k) { return pixels ? nullptr : all.data() + k * ppi; };
  auto latents = [&](const std::vector<uint8_t>& all, size_t k) {
    return all.empty() ? nullptr : all.data() + k * li.per_image;
  };
  const ShardWriter writer(o, tok, ppi);
  json summary;
  {
    std::vector<Item> docs;
    for (const auto& d : sc.train)
      docs.push_back({d.kind, &d.text, has_image(d.kind) ? codes(train_codes, d.image) : nullptr,
                      has_speech(d.kind) ? &speech.train[d.utt] : nullptr,
                      has_image(d.kind) ? &im.train[d.image] : nullptr,
                      has_image(d.kind) ? latents(li.train, d.image) : nullptr});
    writer.write("train-000.shard", docs, summary);
  }
  std::vector<int> val_kinds = {kGen, kCap, kQa};
  if (o.speech) val_kinds.insert(val_kinds.end(), {kAsr, kTts, kSpeech});
  for (int kind : val_kinds) {
    std::vector<Item> docs;
    for (size_t i = 0; i < sc.val.size(); ++i)
      docs.push_back({kind, kind == kQa ? &sc.val_qa[i] : &sc.val_caption[i], codes(val_codes, sc.val[i].image),
                      o.speech ? &speech.val[i] : nullptr, &im.val[sc.val[i].image],
                      latents(li.val, sc.val[i].image)});
    writer.write(cat("val-", kKindNames[kind], ".shard"), docs, summary);
  }
  return summary;
}

// vocab.json: text ids, then the image codes, then the speech units.
Vocab corpus_vocab(const CorpusOptions& o, const TextTokenizer& tok, size_t patches_per_image,
                   const SpeechUnits& speech) {
  const int V_text = tok.vocab_size();
  const uint32_t sp0 = static_cast<uint32_t>(V_text) + static_cast<uint32_t>(o.codebook);
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
  if (o.setting == "transfusion") {  // SPEC 2b: images are a continuous modality, no ids
    vocab["vocab_size"] = V_text;
    vocab["setting"] = "transfusion";
    vocab["modalities"] = {{{"name", "text"}, {"begin", 0}, {"end", V_text}},
                           {{"name", "image"}, {"kind", "continuous"}, {"patch", o.patch}, {"channels", 3},
                            {"image_size", o.image_size}}};
    if (o.autoencoder) {  // the model's image is the latent image (latent_space.hpp)
      const int g = o.image_size / 4;
      vocab["modalities"][1] = {{"name", "image"}, {"kind", "continuous"}, {"patch", o.latent_patch},
                                {"channels", o.latent_channels}, {"image_size", g}};
      vocab["patch"] = o.latent_patch;
      vocab["autoencoder"] = {{"file", "autoencoder.safetensors"}, {"modality", "image"},
                              {"image_size", o.image_size}, {"latent_size", g},
                              {"latent_channels", o.latent_channels}};
    }
  }
  if (o.speech) {
    vocab["vocab_size"] = V_text + o.codebook + o.speech_units;
    vocab["modalities"].push_back({{"name", "speech"}, {"begin", sp0}, {"end", sp0 + o.speech_units}});
    vocab["bos_speech_id"] = tok.bos_speech_id();
    vocab["eos_speech_id"] = tok.eos_speech_id();
    vocab["speech_units"] = o.speech_units;
    vocab["speech_units_per_second"] = speech.codebook.mel.sample_rate / speech.codebook.mel.hop_length;
    vocab["speech_samples_per_unit"] = speech.codebook.mel.hop_length;
  }
  return Vocab(std::move(vocab));
}

// val-scenes.jsonl: the ground truth of every held-out scene, in the order of the
// val-*.shard documents (document i of each is scene i), for `mot evalgen`: its
// objects, the caption its val-gen/val-cap/val-asr/val-tts documents use, and
// references for CIDEr (that caption and more drawn for it from a stream of their own,
// so the rest of the corpus is what it was without this file).
void write_val_scenes(const CorpusOptions& o, const Scenes& sc) {
  constexpr int kReferences = 5;
  Rng rng(o.seed * 0x2545f4914f6cdd1dull + 0x7a3d);
  std::string text;
  for (size_t i = 0; i < sc.val.size(); ++i) {
    json objs = json::array();
    for (const auto& ob : sc.val[i].scene.objects)
      objs.push_back({{"shape", shape_names()[ob.shape]}, {"colour", color_names()[ob.color]},
                      {"size", ob.size ? "large" : "small"}, {"cx", ob.cx}, {"cy", ob.cy}});
    json refs = json::array({sc.val_caption[i]});
    while (static_cast<int>(refs.size()) < kReferences) refs.push_back(caption(sc.val[i].scene, rng));
    text += json{{"objects", objs}, {"caption", sc.val_caption[i]}, {"references", refs}}.dump() + "\n";
  }
  io::write_file_atomic(o.out + "/val-scenes.jsonl", text);
}

// summary.json beside the shard entries: seed, VQ quality, vocabulary sizes, speech.
void add_summary(const CorpusOptions& o, const Psnr& psnr, int V_text, const SpeechUnits& speech, json& summary) {
  summary["seed"] = o.seed;
  summary["text_vocab"] = V_text;
  if (o.setting == "transfusion") {
    summary["setting"] = "transfusion";
    if (o.autoencoder)
      summary["autoencoder"] = {{"psnr_db", {{"train", psnr.train}, {"heldout", psnr.val}}},
                                {"steps", o.autoencoder_steps},
                                {"latent_channels", o.latent_channels},
                                {"latent_patch", o.latent_patch}};
  } else {
    summary["vq_psnr_db"] = {{"train", psnr.train}, {"heldout", psnr.val}};
    summary["codebook"] = o.codebook;
  }
  if (o.speech) {
    const auto& r = speech.reconstruction;
    summary["speech"] = {{"units", o.speech_units},
                         {"utterances", {{"train", speech.train.size()}, {"heldout", speech.val.size()}}},
                         {"seconds", {{"train", speech.train_seconds}, {"heldout", speech.val_seconds}}},
                         {"codebook_frames", speech.sample_frames},
                         {"reconstruction", {{"utterances", speech.reconstruction_utterances},
                                             {"frames", r.frames},
                                             {"quantisation_db", r.quantisation_db},
                                             {"vocoder_db", r.vocoder_db},
                                             {"total_db", r.total_db},
                                             {"spectral_convergence", r.spectral_convergence}}}};
  }
}

}  // namespace

void synth_corpus(const CorpusOptions& o) {
  check_options(o);
  prepare_out_dir(o);
  const Stopwatch secs;

  Scenes sc = draw_scenes(o);
  progress(o, cat(sc.train.size(), " training and ", sc.val.size(), " held-out scenes (", secs(), " s)"));

  const Images im = render_images(o, sc);
  const bool pixels = o.setting == "transfusion";
  VqCodebook vq;
  Psnr psnr;
  LatentImages li;
  std::optional<ConvAutoencoder> ae;
  if (o.autoencoder) {
    ae.emplace(learn_autoencoder(o, im, li, secs));
    psnr = li.psnr;
  } else if (pixels) {
    progress(o, cat("rendered ", im.train.size() + im.val.size(), " images of ", o.image_size, "x", o.image_size,
                    "; Transfusion setting: images stay pixels (", im.patches_per_image, " patches of ", o.patch, "x",
                    o.patch, ")"));
  } else {
    vq = learn_vq(o, im);
    psnr = measure_vq(vq, im);
    progress(o, cat("VQ reconstruction PSNR: train ", psnr.train, " dB, held-out ", psnr.val, " dB (", secs(), " s)"));
  }

  const SpeechUnits speech = o.speech ? speak_captions(o, sc, secs) : SpeechUnits{};

  std::vector<std::string> texts;  // the text tokenizer learns on training text
  for (const auto& d : sc.train) texts.push_back(d.text);
  const TextTokenizer tok = TextTokenizer::train(texts, o.text_vocab, o.speech);
  progress(o, cat("SentencePiece BPE: ", tok.vocab_size(), " text pieces"));

  json summary = write_shards(o, sc, im, vq, li, speech, tok);
  tok.save(o.out + "/text.model");
  if (ae) ae->save(o.out + "/autoencoder.safetensors");
  if (!pixels) vq.save(o.out + "/vq.safetensors");
  if (o.speech) speech.codebook.save(o.out + "/speech.safetensors");
  corpus_vocab(o, tok, im.patches_per_image, speech).write(o.out);
  write_val_scenes(o, sc);
  add_summary(o, psnr, tok.vocab_size(), speech, summary);
  io::write_file_atomic(o.out + "/summary.json", summary.dump(2) + "\n");
  progress(o, cat("wrote ", o.out, " (", secs(), " s): ", summary["shards"]["train-000.shard"]["tokens"].get<int64_t>(),
                  " training tokens"));
}

DecodedDoc decode_document(const std::string& dir, const std::vector<uint32_t>& tokens) {
  const Vocab v = Vocab::read(dir, "not a corpus made by `mot data synth`");
  const TextTokenizer tok = TextTokenizer::load(dir + "/text.model");
  const uint32_t img0 = static_cast<uint32_t>(tok.vocab_size());
  // The speech range, if the corpus has one (vocab.json's "speech" modality).
  const uint32_t sp0 = v.begin_of("speech").value_or(UINT32_MAX);
  const int bos_sp = tok.bos_speech_id(), eos_sp = tok.eos_speech_id();
  DecodedDoc d;
  std::vector<int> text;
  bool in_image = false, in_speech = false;
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
    } else if (bos_sp >= 0 && static_cast<int>(t) == bos_sp) {
      flush();
      in_speech = true;
      d.speech.emplace_back();
      d.text += d.text.empty() ? "<speech>" : " <speech> ";
    } else if (eos_sp >= 0 && static_cast<int>(t) == eos_sp) {
      in_speech = false;
    } else if (in_speech && t >= sp0) {
      d.speech.back().push_back(t - sp0);
    } else if (in_image && t >= img0 && t < sp0) {
      d.images.back().push_back(t - img0);
    } else if (t < img0) {
      text.push_back(static_cast<int>(t));
    }
  }
  flush();
  return d;
}

}  // namespace mot::data
