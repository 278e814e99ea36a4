// Text to speech for the built-in corpus (`mot data synth --speech`): espeak-ng
// (Debian libespeak-ng-dev) through its C API in synchronous mode, samples collected
// by a callback, resampled from espeak-ng's native 22050 Hz to the speech tokenizer's
// 16 kHz (audio/resample.hpp).
//
// espeak-ng keeps its voice and parameters in process-wide state and is not
// thread-safe, so every call takes one process-wide lock and sets every parameter
// (voice, rate, pitch, range) before synthesising. Determinism: espeak-ng also carries
// waveform state from one utterance into the next (measured with 1.51: the same text
// and voice spoken twice differ in most samples and by a few samples in length), and
// espeak_Terminate + re-initialise hangs, so an utterance is a deterministic function
// of every speak() call made before it in the process: callers that need the same
// bytes from the same seed speak in a fixed order, serially (synth_corpus does).
// Its noise sources (aspiration, frication) draw from libc rand(), whose state is
// process-wide and shared with anything else that calls rand(): speak() reseeds it
// from the voice before every utterance, so the noise is the voice's own.
#pragma once
#include <string>
#include <vector>

#include "mot/core/rng.hpp"

namespace mot::data {

struct SpeechVoice {
  std::string name = "en-us";  // espeak-ng voice, optionally "+variant" (e.g. "en-us+f3")
  int rate_wpm = 175;          // espeakRATE, words per minute (80..450)
  int pitch = 50;              // espeakPITCH, 0..100 (50 = the voice's normal)
  int range = 50;              // espeakRANGE, 0..100 (0 = monotone)
  unsigned noise_seed = 1;     // srand() seed for espeak-ng's noise in this utterance
};

// A voice drawn from a small set of English accents x speaker variants, with speed and
// pitch varied around their defaults (so units see more than one speaker).
SpeechVoice random_voice(Rng& rng);

// 16 kHz mono samples in [-1, 1] of `text` (ASCII/UTF-8) spoken with `v`.
// mot::Error when espeak-ng cannot be initialised (espeak-ng-data missing), the voice
// is unknown, or synthesis fails.
std::vector<float> speak(const std::string& text, const SpeechVoice& v);

}  // namespace mot::data
