#include <filesystem>

#include "mot/cli/commands.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/data/format/vocab.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/data/synth/synth_tokens.hpp"
#include "mot/data/synth/corpus.hpp"
#include "mot/data/media/image.hpp"
#include "mot/data/tokenize/vq.hpp"
#include "mot/model/config.hpp"

namespace mot::cli {

void register_data_prepare(CLI::App& data, Action& action);  // cmd_prepare.cpp

void show_speech(const std::string& dir, const std::string& split, int64_t doc,
                 const std::vector<std::vector<uint32_t>>& spans, const std::string& wav_dir);  // cmd_data_speech.cpp

void register_data(CLI::App& app, Action& action) {
  auto* data = app.add_subcommand("data", "Make and inspect training data");
  data->require_subcommand(1);

  auto co = std::make_shared<data::CorpusOptions>();
  auto* corpus = data->add_subcommand("synth", "Generate the built-in text+image corpus: scenes, captions, tokenizers, shards");
  corpus->add_option("--out", co->out, "output data directory")->required();
  corpus->add_option("--seed", co->seed, "seed (same seed -> same bytes)");
  corpus->add_option("--scenes", co->scenes, "training documents (one scene each)");
  corpus->add_option("--val-scenes", co->val_scenes, "held-out scenes (each gives a gen, a cap and a qa document)");
  corpus->add_option("--image-size", co->image_size, "image side in pixels");
  corpus->add_option("--patch", co->patch, "VQ patch side in pixels");
  corpus->add_option("--codebook", co->codebook, "VQ codebook size (image vocabulary)");
  corpus->add_option("--text-vocab", co->text_vocab, "SentencePiece BPE vocabulary size");
  corpus->add_option("--max-objects", co->max_objects, "objects per scene, at most (1-3)");
  corpus->add_option("--mix-gen", co->mix_gen, "share of caption->image documents");
  corpus->add_option("--mix-cap", co->mix_cap, "share of image->caption documents");
  corpus->add_option("--mix-qa", co->mix_qa, "share of text-only question/answer documents");
  corpus->add_option("--vq-iters", co->vq_iters, "k-means iterations");
  corpus->add_flag("--speech", co->speech, "add speech: captions spoken with espeak-ng as 25 Hz units (asr, tts, speech documents)");
  corpus->add_option("--speech-units", co->speech_units, "speech unit codebook size (speech vocabulary)");
  corpus->add_option("--speech-iters", co->speech_iters, "k-means iterations of the speech unit codebook");
  corpus->add_option("--speech-sample-frames", co->speech_sample_frames, "log-mel frames the unit codebook is learned on, at most");
  corpus->add_option("--mix-asr", co->mix_asr, "share of speech->caption documents (with --speech)");
  corpus->add_option("--mix-tts", co->mix_tts, "share of caption->speech documents (with --speech)");
  corpus->add_option("--mix-speech", co->mix_speech, "share of speech-only documents (with --speech)");
  corpus->add_flag("--force", co->force, "overwrite a non-empty output directory");
  corpus->callback([co, &action] {
    action = [co] {
      data::synth_corpus(*co);
      return 0;
    };
  });

  struct ShowOpts2 { std::string dir, split = "train", out, wav; int64_t doc = 0; int scale = 1; };
  auto sh = std::make_shared<ShowOpts2>();
  auto* showdoc = data->add_subcommand("show", "Print a document of a synth corpus and write its image as PNG");
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
      for (uint64_t i = b; i < e; ++i) toks.push_back(s.token(i));
      const data::DecodedDoc d = data::decode_document(sh->dir, toks);
      std::printf("%s document %lld (%zu tokens): %s\n", name.c_str(), static_cast<long long>(sh->doc), toks.size(),
                  d.text.c_str());
      show_speech(sh->dir, name, sh->doc, d.speech, sh->wav);
      if (d.images.empty()) return 0;
      if (sh->out.empty()) {
        std::printf("(%zu image(s); pass --out F.png to write them)\n", d.images.size());
        return 0;
      }
      const data::VqCodebook vq = data::VqCodebook::load(sh->dir + "/vq.safetensors");
      const int size = data::Vocab::read(sh->dir, "not a corpus made by `mot data synth`").fields.at("image_size").get<int>();
      for (size_t i = 0; i < d.images.size(); ++i) {
        if (d.images[i].size() != static_cast<size_t>((size / vq.patch) * (size / vq.patch)))
          fail("document ", sh->doc, ": image ", i + 1, " has ", d.images[i].size(), " tokens, expected ",
               (size / vq.patch) * (size / vq.patch));
        std::string path = sh->out;
        if (d.images.size() > 1) {
          auto dot = path.rfind(".png");
          path = (dot == std::string::npos ? path : path.substr(0, dot)) + "-" + std::to_string(i + 1) + ".png";
        }
        const data::Image img = vq.decode(d.images[i].data(), size, size);
        data::Image big(size * sh->scale, size * sh->scale);
        for (int y = 0; y < big.height; ++y)
          for (int x = 0; x < big.width; ++x)
            std::copy(img.at(x / sh->scale, y / sh->scale), img.at(x / sh->scale, y / sh->scale) + 3, big.at(x, y));
        data::write_png(path, big);
        std::printf("wrote %s\n", path.c_str());
      }
      return 0;
    };
  });

  struct SynthOpts { std::string config, out; int64_t tokens = 1'000'000, val_tokens = 50'000; uint64_t seed = 1; };
  auto so = std::make_shared<SynthOpts>();
  auto* synth = data->add_subcommand("synth-tokens", "Generate learnable token shards for a config's modalities");
  synth->add_option("--config", so->config, "config TOML (its [model] modalities)")->required();
  synth->add_option("--out", so->out, "output directory")->required();
  synth->add_option("--tokens", so->tokens, "training tokens")->check(positive_int());
  synth->add_option("--val-tokens", so->val_tokens, "validation tokens")->check(positive_int());
  synth->add_option("--seed", so->seed, "seed");
  synth->callback([so, &action] {
    action = [so] {
      RunConfig rc = load_run_config(so->config, {});
      data::write_synth_shards(rc.model, so->out, so->tokens, so->val_tokens, so->seed);
      std::printf("wrote %s/train-000.shard and %s/val-000.shard\n", so->out.c_str(), so->out.c_str());
      return 0;
    };
  });

  struct PackOpts { std::string config, input, out; };
  auto po = std::make_shared<PackOpts>();
  auto* pack = data->add_subcommand("pack", "Pack a .jsonl token file into a shard (one row = one document)");
  pack->add_option("--config", po->config, "config TOML (its [model] modalities)")->required();
  pack->add_option("--input", po->input, ".jsonl with {\"tokens\": [...]} rows")->required();
  pack->add_option("--out", po->out, "output .shard file (name it val-*.shard for validation)")->required();
  pack->callback([po, &action] {
    action = [po] {
      RunConfig rc = load_run_config(po->config, {});
      auto rows = data::read_jsonl_rows(po->input, rc.model.vocab_size);
      std::vector<uint32_t> tokens;
      std::vector<uint64_t> offsets{0};
      for (const auto& r : rows) {
        for (int32_t t : r)
          if (t >= 0) tokens.push_back(static_cast<uint32_t>(t));
        offsets.push_back(tokens.size());
      }
      std::vector<data::ModalityRange> mods;
      for (const auto& m : rc.model.modalities)
        mods.push_back({m.name, static_cast<uint32_t>(m.begin), static_cast<uint32_t>(m.end)});
      data::write_shard(po->out, mods, tokens, offsets);
      std::printf("wrote %s: %zu documents, %zu tokens\n", po->out.c_str(), rows.size(), tokens.size());
      return 0;
    };
  });

  struct ShowOpts { std::string path; };
  auto ho = std::make_shared<ShowOpts>();
  auto* show = data->add_subcommand("inspect", "Print a shard's header and token counts per modality");
  show->add_option("shard", ho->path, "a .shard file")->required();
  show->callback([ho, &action] {
    action = [ho] {
      data::Shard s = data::Shard::open(ho->path);
      std::printf("%s: %zu tokens, %zu documents, vocab %u\n", ho->path.c_str(), s.n_tokens(), s.n_docs(),
                  s.vocab_size());
      std::vector<size_t> count(s.modalities().size());
      for (size_t i = 0; i < s.n_tokens(); ++i) {
        const uint32_t t = s.token(i);
        for (size_t m = 0; m < count.size(); ++m)
          if (t >= s.modalities()[m].begin && t < s.modalities()[m].end) count[m]++;
      }
      for (size_t m = 0; m < count.size(); ++m)
        std::printf("  %-10s [%u, %u): %zu tokens\n", s.modalities()[m].name.c_str(), s.modalities()[m].begin,
                    s.modalities()[m].end, count[m]);
      return 0;
    };
  });

  register_data_prepare(*data, action);
}

}  // namespace mot::cli
