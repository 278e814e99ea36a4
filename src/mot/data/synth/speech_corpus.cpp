#include "mot/data/synth/speech_corpus.hpp"

#include <algorithm>

#include "mot/audio/audio_io.hpp"
#include "mot/audio/mel.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/synth/speech_synth.hpp"

namespace mot::data {

SpeechUnits build_speech_units(const std::vector<std::string>& train_texts, const std::vector<std::string>& val_texts,
                               const SpeechCorpusOptions& opt, const std::function<void(const std::string&)>& log) {
  if (opt.units < 2 || opt.units > 65536) fail("--speech-units must be in [2, 65536] (got ", opt.units, ")");
  if (train_texts.empty()) fail("synth: the mixture produced no speech documents (raise --mix-asr, --mix-tts or --mix-speech)");
  const audio::MelConfig cfg;  // 16 kHz, 25 frames per second, 80 bands
  audio::MelSpectrogram mel(cfg);
  const size_t M = static_cast<size_t>(cfg.n_mels);
  Rng voices(opt.seed * 0x2545f4914f6cdd1dull + 0x5bd1e995);  // own stream: the scene draws stay as they were

  SpeechUnits out;
  out.train.resize(train_texts.size());
  out.val.resize(val_texts.size());
  std::vector<float> sample;         // log-mel frames of the first utterances, until the codebook exists
  size_t sampled = 0;                // utterances in `sample`
  bool have_codebook = false;
  std::vector<std::vector<float>> heldout_audio;

  auto learn = [&] {
    const size_t n = sample.size() / M;
    if (n < static_cast<size_t>(opt.units))
      fail("synth: ", n, " speech frames are too few for ", opt.units, " units (raise --scenes or --mix-asr/"
           "--mix-tts/--mix-speech, or lower --speech-units)");
    log(cat("learning a ", opt.units, "-unit speech codebook on ", n, " log-mel frames of ", sampled, " utterances"));
    audio::UnitTrainOptions uo;
    uo.units = opt.units;
    uo.seed = opt.seed;
    uo.iters = opt.iters;
    out.codebook = audio::UnitCodebook::train(sample.data(), n, cfg, uo);
    out.sample_frames = n;
    // The sampled utterances are encoded from the frames already computed.
    size_t at = 0;
    for (size_t i = 0; i < sampled; ++i) {
      const size_t T = out.train[i].size();  // holds placeholders of the right length until now
      out.train[i] = out.codebook.encode(sample.data() + at * M, T);
      at += T;
    }
    sample = {};
    have_codebook = true;
  };

  const size_t total = train_texts.size() + val_texts.size();
  for (size_t i = 0; i < total; ++i) {
    const bool is_val = i >= train_texts.size();
    const size_t j = is_val ? i - train_texts.size() : i;
    if (is_val && !have_codebook) learn();
    const std::vector<float> pcm = speak(is_val ? val_texts[j] : train_texts[j], random_voice(voices));
    (is_val ? out.val_seconds : out.train_seconds) += static_cast<double>(pcm.size()) / audio::kSampleRate;
    if (is_val && heldout_audio.size() < static_cast<size_t>(opt.reconstruction_utterances) &&
        pcm.size() >= static_cast<size_t>(cfg.hop_length))
      heldout_audio.push_back(pcm);
    const std::vector<float> lm = mel.log_mel(pcm);
    const size_t T = lm.size() / M;
    if (have_codebook) {
      (is_val ? out.val[j] : out.train[j]) = out.codebook.encode(lm.data(), T);
    } else {
      sample.insert(sample.end(), lm.begin(), lm.end());
      out.train[j].assign(T, 0);  // length only; encoded in learn()
      ++sampled;
      if (sample.size() / M >= opt.sample_frames) learn();
    }
    if ((i + 1) % 1000 == 0) log(cat("spoke ", i + 1, "/", total, " utterances"));
  }
  if (!have_codebook) learn();

  // Reconstruction on held-out speech: what the units keep, and what a listener hears.
  for (const auto& a : heldout_audio) {
    const audio::Reconstruction r = audio::measure_reconstruction(out.codebook, a);
    auto& m = out.reconstruction;
    m.frames += r.frames;
    m.quantisation_db += r.quantisation_db;
    m.vocoder_db += r.vocoder_db;
    m.total_db += r.total_db;
    m.spectral_convergence += r.spectral_convergence;
    m.quantisation_mse += r.quantisation_mse;
  }
  if (!heldout_audio.empty()) {
    const double k = static_cast<double>(heldout_audio.size());
    auto& m = out.reconstruction;
    m.quantisation_db /= k;
    m.vocoder_db /= k;
    m.total_db /= k;
    m.spectral_convergence /= k;
    m.quantisation_mse /= k;
  }
  out.reconstruction_utterances = static_cast<int>(heldout_audio.size());
  return out;
}

}  // namespace mot::data
