// Speech for the built-in corpus (`mot data synth --speech`): texts spoken with
// espeak-ng (speech_synth.hpp), a unit codebook (data/tokenize/unit_codebook.hpp) learned on
// a bounded sample of the training utterances' log-mel frames, and every utterance
// encoded to units at 25 Hz (one unit per 640 samples of 16 kHz audio).
//
// One pass, bounded memory: utterances are spoken in order (training texts, then
// held-out texts); the log-mel frames of the first training utterances are kept until
// `sample_frames` frames are collected (training scenes are in random order, so these
// are a random sample), the codebook is learned on them, and from then on each
// utterance is encoded as soon as it is spoken. Only units are kept, plus the audio of
// the first few held-out utterances for the reconstruction measure.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mot/audio/reconstruction.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"

namespace mot::data {

struct SpeechCorpusOptions {
  int units = 500;              // codebook size (the speech vocabulary)
  uint64_t seed = 1;            // voices and k-means
  int iters = 20;               // Lloyd iterations
  size_t sample_frames = 100000;  // frames the codebook is learned on, at most (~67 minutes)
  int reconstruction_utterances = 4;  // held-out utterances measured end to end
};

struct SpeechUnits {
  audio::UnitCodebook codebook;
  std::vector<std::vector<uint32_t>> train, val;  // units of each utterance, in input order
  size_t sample_frames = 0;                        // frames the codebook was learned on
  double train_seconds = 0, val_seconds = 0;      // audio spoken
  audio::Reconstruction reconstruction;           // mean over the measured held-out utterances
  int reconstruction_utterances = 0;
};

// Speaks train_texts then val_texts (serially: espeak-ng's output depends on what it
// spoke before, so a fixed order is what makes the corpus reproducible), each with a
// voice drawn from an Rng seeded by opt.seed. log(message) reports progress.
// mot::Error when the sample holds fewer frames than units.
SpeechUnits build_speech_units(const std::vector<std::string>& train_texts, const std::vector<std::string>& val_texts,
                               const SpeechCorpusOptions& opt, const std::function<void(const std::string&)>& log);

}  // namespace mot::data
