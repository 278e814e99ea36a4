// `mot data show`: a document of a data directory as text, its images as PNG and its
// speech spans as unit ids (run-length compacted: 25 Hz units repeat while a sound
// lasts) and, with --wav DIR, as WAVs decoded with the corpus's unit codebook (mean
// log-mel per unit, Griffin-Lim) so people can listen. Registered under `mot data`.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mot/audio/audio_io.hpp"
#include "mot/cli/commands.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/data/format/vocab.hpp"
#include "mot/data/media/image.hpp"
#include "mot/data/media/latent_space.hpp"
#include "mot/data/media/latents.hpp"
#include "mot/data/synth/corpus.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"
#include "mot/data/tokenize/vq.hpp"

namespace mot::cli {

namespace {

void show_speech(const std::string& dir, const std::string& split, int64_t doc,
                 const std::vector<std::vector<uint32_t>>& spans, const std::string& wav_dir) {
  for (size_t i = 0; i < spans.size(); ++i) {
    const auto& u = spans[i];
    std::string line;
    for (size_t a = 0; a < u.size();) {
      size_t b = a;
      while (b < u.size() && u[b] == u[a]) ++b;
      if (a) line += ' ';
      line += std::to_string(u[a]);
      if (b - a > 1) {
        line += 'x';
        line += std::to_string(b - a);
      }
      a = b;
    }
    std::printf("speech %zu: %zu units (%.2f s): %s\n", i + 1, u.size(), u.size() / 25.0, line.c_str());
  }
  if (spans.empty() || wav_dir.empty()) return;
  const audio::UnitCodebook cb = audio::UnitCodebook::load(dir + "/speech.safetensors");
  std::error_code ec;
  std::filesystem::create_directories(wav_dir, ec);
  if (ec) fail(wav_dir, ": cannot create directory: ", ec.message());
  for (size_t i = 0; i < spans.size(); ++i) {
    const std::string path = cat(wav_dir, "/", split, "-", doc, "-speech", i + 1, ".wav");
    const std::vector<float> pcm = audio::units_to_audio(cb, spans[i].data(), spans[i].size());
    audio::write_wav(path, pcm, cb.mel.sample_rate);
    std::printf("wrote %s (%zu samples)\n", path.c_str(), pcm.size());
  }
}

// Each image span of a document decoded with the directory's VQ codebook, enlarged
// `scale` times, as OUT (several images: OUT-1.png, OUT-2.png, ...).
void write_images(const std::string& dir, int64_t doc, const std::vector<std::vector<uint32_t>>& images,
                  const std::string& out, int scale) {
  const data::VqCodebook vq = data::VqCodebook::load(dir + "/vq.safetensors");
  const int size = data::Vocab::read(dir, "not a corpus made by `mot data synth`").fields.at("image_size").get<int>();
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].size() != static_cast<size_t>((size / vq.patch) * (size / vq.patch)))
      fail("document ", doc, ": image ", i + 1, " has ", images[i].size(), " tokens, expected ",
           (size / vq.patch) * (size / vq.patch));
    std::string path = out;
    if (images.size() > 1) {
      auto dot = path.rfind(".png");
      path = (dot == std::string::npos ? path : path.substr(0, dot)) + "-" + std::to_string(i + 1) + ".png";
    }
    data::write_png(path, data::upscale(vq.decode(images[i].data(), size, size), scale));
    std::printf("wrote %s\n", path.c_str());
  }
}

// Transfusion corpora (version 2 shards): document doc's images from the shard's
// pixels (or latents, through the corpus's autoencoder), enlarged `scale` times, as OUT
// (several: OUT-1.png, ...).
void write_pixel_images(const std::string& dir, const data::Shard& s, uint64_t b, uint64_t e, const std::string& out,
                        int scale) {
  const data::ImageLatentSpace space(dir, static_cast<int>(s.image_size()), static_cast<int>(s.image_channels()),
                                     static_cast<int>(s.image_patch()));
  std::vector<data::Image> images;
  for (size_t k = s.first_image_at_or_after(b); k < s.n_images() && s.image_start(k) < e; ++k) {
    std::vector<float> z;
    data::append_patch_latents(s.image_pixels(k), z);
    images.push_back(space.decode(z.data()));
  }
  for (size_t i = 0; i < images.size(); ++i) {
    std::string path = out;
    if (images.size() > 1) {
      auto dot = path.rfind(".png");
      path = (dot == std::string::npos ? path : path.substr(0, dot)) + "-" + std::to_string(i + 1) + ".png";
    }
    data::write_png(path, data::upscale(images[i], scale));
    std::printf("wrote %s\n", path.c_str());
  }
}

}  // namespace

void register_data_show(CLI::App& data, Action& action) {
  struct ShowOpts { std::string dir, split = "train", out, wav; int64_t doc = 0; int scale = 1; };
  auto sh = std::make_shared<ShowOpts>();
  auto* showdoc = data.add_subcommand("show", "Print a document of a synth corpus and write its image as PNG");
  showdoc->add_option("dir", sh->dir, "data directory made by `mot data synth`")->required();
  showdoc->add_option("--doc", sh->doc, "document index")->check(non_negative_int());
  showdoc->add_option("--split", sh->split, "shard name without .shard: train-000, val-gen, val-cap, val-qa (val-asr, val-tts, val-speech)");
  showdoc->add_option("--wav", sh->wav, "directory to write each speech span to as a 16 kHz WAV (units decoded with speech.safetensors)");
  showdoc->add_option("--out", sh->out, "PNG file for the document's image (several images: F-1.png, ...)");
  showdoc->add_option("--scale", sh->scale, "enlarge the PNG by this factor (nearest neighbour)")->check(int_range(1, 32));
  showdoc->callback([sh, &action] {
    action = [sh] {
      std::string name = sh->split == "train" ? "train-000" : sh->split;
      const data::Shard s = data::Shard::open(sh->dir + "/" + name + ".shard");
      if (static_cast<size_t>(sh->doc) >= s.n_docs())
        fail("--doc ", sh->doc, " is out of range: ", name, " holds ", s.n_docs(), " documents");
      const uint64_t b = s.doc_offset(sh->doc), e = s.doc_offset(sh->doc + 1);
      std::vector<uint32_t> toks;
      std::vector<int32_t> entries(e - b);
      s.read_tokens(b, e - b, entries.data());
      size_t image_positions = 0;
      for (int32_t t : entries) {
        if (t == data::kShardImageEntry) ++image_positions;  // a Transfusion image: pixels, not ids
        else toks.push_back(static_cast<uint32_t>(t));
      }
      const data::DecodedDoc d = data::decode_document(sh->dir, toks);
      std::printf("%s document %lld (%zu tokens%s): %s\n", name.c_str(), static_cast<long long>(sh->doc), toks.size(),
                  image_positions ? cat(", ", image_positions, " image positions").c_str() : "", d.text.c_str());
      show_speech(sh->dir, name, sh->doc, d.speech, sh->wav);
      if (d.images.empty()) return 0;
      if (sh->out.empty()) {
        std::printf("(%zu image(s); pass --out F.png to write them)\n", d.images.size());
        return 0;
      }
      if (s.n_images() > 0) write_pixel_images(sh->dir, s, b, e, sh->out, sh->scale);
      else write_images(sh->dir, sh->doc, d.images, sh->out, sh->scale);
      return 0;
    };
  });
}

}  // namespace mot::cli
