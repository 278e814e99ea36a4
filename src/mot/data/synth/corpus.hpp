// The built-in multimodal corpus (`mot data synth`): procedural scenes of coloured
// shapes with exact ground truth, rendered to images, described by captions, and
// tokenised with tokenizers learned on the corpus itself (SentencePiece BPE for text,
// a k-means VQ codebook for image patches). Three document kinds:
//   gen  caption -> image   <s> caption <boi> image <eoi> </s>
//   cap  image -> caption   <s> <boi> image <eoi> caption </s>
//   qa   text only          <s> scene description, question, answer </s>
// With --speech (speech_corpus.hpp), captions spoken with espeak-ng as 25 Hz units:
//   asr    speech -> text   <s> <bos_speech> units <eos_speech> caption </s>
//   tts    text -> speech   <s> caption <bos_speech> units <eos_speech> </s>
//   speech speech only      <s> <bos_speech> units <eos_speech> </s>
// With setting "transfusion" (SPEC 2b) the same documents keep their images as raw pixels
// (no VQ codebook): each image is <boi>, one continuous position per patch, <eoi>, in
// version 2 shards (shard.hpp), and vocab.json lists image as a continuous modality;
// with --autoencoder the shards hold each image's autoencoder latents instead, as bytes
// (latent_space.hpp).
// Validation scenes are held out by content: a scene whose set of (shape, colour)
// pairs hashes to the validation bucket never appears in training.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mot/data/format/shard.hpp"

namespace mot::data {

struct CorpusOptions {
  std::string out;
  std::string setting = "chameleon";  // chameleon (VQ image tokens) | transfusion (pixels)
  uint64_t seed = 1;
  int64_t scenes = 20000;     // training documents (one scene each)
  int64_t val_scenes = 500;   // held-out scenes; each becomes one gen, cap and qa document
  int image_size = 32;
  int patch = 4;
  int codebook = 1024;
  int text_vocab = 512;
  int max_objects = 3;
  double mix_gen = 0.4, mix_cap = 0.4, mix_qa = 0.2;
  int vq_iters = 12;
  // Speech (off by default; off, the output is exactly what it was before speech existed).
  bool speech = false;
  int speech_units = 500;
  int speech_iters = 20;
  int64_t speech_sample_frames = 100000;  // log-mel frames the unit codebook is learned on, at most
  double mix_asr = 0.15, mix_tts = 0.15, mix_speech = 0.1;
  // Transfusion only: images diffused as the latents of a small convolutional
  // autoencoder trained here on the training images (data/autoencoder/), not as pixel
  // patches. Latent grid image_size / 4, latent_channels deep, cut into latent_patch
  // tiles (one position each).
  bool autoencoder = false;
  int latent_channels = 4;
  int latent_patch = 2;
  int autoencoder_steps = 4000;
  bool force = false;
  bool quiet = false;
};

// Validates the options (mot::Error), then writes into opt.out:
//   train-000.shard, val-gen.shard, val-cap.shard, val-qa.shard  token shards
//   vocab.json     vocab_size, modalities, bos/eos/boi/eoi ids, image geometry
//   text.model     SentencePiece model      vq.safetensors  image codebook (chameleon)
//   autoencoder.safetensors  the image autoencoder (transfusion with autoencoder)
//   summary.json   documents and tokens per kind and modality, VQ PSNR
//   val-scenes.jsonl  each held-out scene's objects, caption and CIDEr references
// and with opt.speech also val-asr.shard, val-tts.shard, val-speech.shard and
//   speech.safetensors  the unit codebook (data/tokenize/unit_codebook.hpp)
void synth_corpus(const CorpusOptions& opt);

// A document split back into its parts, for `mot data show` and tests.
struct DecodedDoc {
  std::string text;                // text with "<image>" / "<speech>" where an image / speech stood
  std::vector<std::vector<uint32_t>> images;  // codebook indices of each image
  std::vector<std::vector<uint32_t>> speech;  // unit ids (0-based) of each speech span
};
DecodedDoc decode_document(const std::string& data_dir, const std::vector<uint32_t>& tokens);

}  // namespace mot::data
