// `mot data synth`: the built-in text+image(+speech) corpus. Registered under `mot data`.
#include <memory>

#include "mot/cli/commands.hpp"
#include "mot/data/synth/corpus.hpp"

namespace mot::cli {

void register_data_synth(CLI::App& data, Action& action) {
  auto co = std::make_shared<data::CorpusOptions>();
  auto* corpus = data.add_subcommand("synth", "Generate the built-in text+image corpus: scenes, captions, tokenizers, shards");
  corpus->add_option("--out", co->out, "output data directory")->required();
  corpus->add_option("--seed", co->seed, "seed (same seed -> same bytes)");
  corpus->add_option("--setting", co->setting,
                     "chameleon: images as VQ tokens; transfusion: images as raw pixels for diffusion (SPEC 2b)")
      ->check(CLI::IsMember({"chameleon", "transfusion"}));
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
  corpus->add_flag("--autoencoder", co->autoencoder,
                   "transfusion: diffuse images as the latents of a small convolutional autoencoder trained here "
                   "on the training images (autoencoder.safetensors), not as pixel patches");
  corpus->add_option("--latent-channels", co->latent_channels, "autoencoder latent channels (grid: image side / 4)");
  corpus->add_option("--latent-patch", co->latent_patch, "side of the latent tiles the model sees, in latent cells");
  corpus->add_option("--autoencoder-steps", co->autoencoder_steps, "autoencoder training steps (64 images each)");
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
}

}  // namespace mot::cli
