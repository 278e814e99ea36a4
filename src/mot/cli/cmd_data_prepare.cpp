// `mot data prepare`: the user's own text, image and audio files -> a data directory.
// Registered under `mot data` by cmd_data.cpp.
#include <memory>

#include "mot/cli/commands.hpp"
#include "mot/data/prepare/prepare.hpp"

namespace mot::cli {

void register_data_prepare(CLI::App& data, Action& action) {
  auto o = std::make_shared<data::PrepareOptions>();
  auto* p = data.add_subcommand(
      "prepare", "Turn a folder of text files, captioned images (PNG/JPEG) and transcribed audio into shards and tokenizers");
  p->add_option("--in", o->in, "input folder (walked recursively)")->required();
  p->add_option("--out", o->out, "output data directory")->required();
  p->add_option("--tokenizers", o->tokenizers,
                "reuse the tokenizers (vocab.json, text.model, vq.safetensors, speech.safetensors) of this data directory");
  p->add_option("--seed", o->seed, "seed of the validation split and tokenizer samples")->capture_default_str();
  p->add_option("--val-fraction", o->val_fraction, "share of files held out for validation, each by a seeded hash of its path (0 to 0.5)")->capture_default_str();
  p->add_option("--image-size", o->image_size, "images are centre-cropped and resized to this square side")->capture_default_str();
  p->add_option("--patch", o->patch, "VQ patch side in pixels")->capture_default_str();
  p->add_option("--codebook", o->codebook, "VQ codebook size (image vocabulary)")->capture_default_str();
  p->add_option("--text-vocab", o->text_vocab, "SentencePiece BPE vocabulary size (at most)")->capture_default_str();
  p->add_option("--vq-iters", o->vq_iters, "k-means iterations")->capture_default_str();
  p->add_option("--vq-sample", o->vq_sample, "images the codebook learns from, at most")->capture_default_str();
  p->add_option("--text-sample-mb", o->text_sample_mb, "MiB of text the BPE learns from, at most")->capture_default_str();
  p->add_option("--shard-tokens", o->shard_tokens, "tokens per training shard before the next one starts")->capture_default_str();
  p->add_option("--speech-units", o->speech_units, "speech unit codebook size (speech vocabulary)")->capture_default_str();
  p->add_option("--speech-iters", o->speech_iters, "k-means iterations of the speech unit codebook")->capture_default_str();
  p->add_option("--speech-sample-frames", o->speech_sample_frames,
                "log-mel frames (25 per second) the unit codebook learns from, at most")->capture_default_str();
  p->add_option("--speech-max-seconds", o->speech_max_seconds,
                "longer audio files are cut into utterances of at most this many seconds")->capture_default_str();
  p->add_option("--image-docs", o->image_docs, "documents per image caption: gen (caption->image), cap, or gen,cap")->capture_default_str();
  p->add_flag("--force", o->force, "replace the prepared data in a non-empty --out");
  p->add_flag("--quiet", o->quiet, "no progress lines");
  p->callback([o, &action] {
    action = [o] {
      data::prepare_data(*o);
      return 0;
    };
  });
}

}  // namespace mot::cli
