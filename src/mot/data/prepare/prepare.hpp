// `mot data prepare`: turns a folder of the user's own files into a data directory
// with the layout `mot data synth` writes (train/val shards, vocab.json, text.model,
// vq.safetensors, summary.json), so `mot train --data DIR` and `mot data show` work
// on it unchanged.
//
// Input (walked recursively in sorted path order; names starting with '.' ignored):
//   *.txt                  a text document (not paired with a media file)
//   *.png, *.jpg, *.jpeg   an image; captions come from a same-named .txt and/or from
//                          captions.jsonl lines {"image": "rel/path.png", "caption": "..."}
//                          ("caption" may be a list; paths relative to the jsonl's folder)
//   *.wav, *.flac, ...     audio (libsndfile); transcripts from a same-named .txt and/or
//                          captions.jsonl lines {"audio": "rel/path.wav", "caption": "..."}
// Documents use the built-in corpus layouts (corpus.hpp):
//   text  <s> text </s>                        (a file; files over 1 MiB are cut at line ends)
//   gen   <s> caption <boi> image <eoi> </s>   (one per caption)
//   cap   <s> <boi> image <eoi> caption </s>   (one per caption)
//   img   <s> <boi> image <eoi> </s>           (an image without caption)
//   asr   <s> <bos_speech> units <eos_speech> transcript </s>   (one per transcript)
//   tts   <s> transcript <bos_speech> units <eos_speech> </s>   (one per transcript)
//   speech <s> <bos_speech> units <eos_speech> </s>  (no transcript; or an utterance of a
//                          file cut at --speech-max-seconds: prepare_speech.hpp)
// It streams: pass 1 checks the text and samples it (and images) for the tokenizers,
// pass 2 encodes file by file into shards of bounded size. Broken files are skipped
// and listed, never fatal, and remove only themselves (a valid file is never dropped
// for a broken one); an input with nothing usable is an error. A file is held out for
// validation by a seeded hash of its path alone (prepare_scan.hpp: assign_validation).
#pragma once
#include <cstdint>
#include <string>

namespace mot::data {

struct PrepareOptions {
  std::string in, out;
  std::string tokenizers;          // another data dir whose tokenizers to reuse ("" = train new ones)
  uint64_t seed = 1;               // validation split and tokenizer samples
  double val_fraction = 0.02;      // share of files held out for validation (by path hash)
  int image_size = 32;             // images are centre-cropped to a square and resized to this
  int patch = 4;                   // VQ patch side in pixels
  int codebook = 1024;             // VQ codebook size (image vocabulary)
  int text_vocab = 4096;           // SentencePiece BPE vocabulary size (at most)
  int vq_iters = 12;               // k-means iterations
  int64_t vq_sample = 4096;        // images the codebook learns from (at most; also <= 64 MiB of pixels)
  int64_t text_sample_mb = 16;     // MiB of text the BPE learns from (at most)
  int64_t shard_tokens = 16 << 20; // training tokens per shard before the next one starts
  int speech_units = 500;          // speech unit codebook size (speech vocabulary), as synth
  int speech_iters = 20;           // its k-means iterations
  int64_t speech_sample_frames = 100000;  // log-mel frames (25 a second) it learns from, at most
  double speech_max_seconds = 30;  // longer audio files are cut into utterances of at most this
  std::string image_docs = "gen,cap";  // which caption/image documents to make: gen, cap or both
  bool force = false;              // clean a non-empty --out (only the files prepare writes)
  bool quiet = false;              // no progress lines (the summary lines stay)
};

// Validates the options (mot::Error), prepares, prints the summary lines on stderr.
void prepare_data(const PrepareOptions& opt);

}  // namespace mot::data
