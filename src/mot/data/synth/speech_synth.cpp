#include "mot/data/synth/speech_synth.hpp"

#include <espeak-ng/speak_lib.h>

#include <cstdlib>
#include <iterator>
#include <mutex>

#include "mot/audio/audio_io.hpp"
#include "mot/audio/resample.hpp"
#include "mot/core/error.hpp"

namespace mot::data {

namespace {

std::mutex g_espeak;   // guards every espeak-ng call (its state is global)
int g_rate = 0;        // espeak-ng's output sample rate once initialised

// Synchronous mode hands audio to this callback in blocks; user_data points at the
// caller's buffer. A NULL wav marks the end of the utterance.
int collect(short* wav, int n, espeak_EVENT* events) {
  if (wav && n > 0 && events && events->user_data)
    static_cast<std::vector<short>*>(events->user_data)->insert(
        static_cast<std::vector<short>*>(events->user_data)->end(), wav, wav + n);
  return 0;
}

void init_locked() {
  if (g_rate > 0) return;
  // DONT_EXIT: a missing espeak-ng-data must be our error, not espeak-ng's exit().
  const int rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, nullptr, espeakINITIALIZE_DONT_EXIT);
  if (rate <= 0) fail("espeak-ng: cannot initialise (is espeak-ng-data installed?)");
  espeak_SetSynthCallback(collect);
  g_rate = rate;
}

}  // namespace

SpeechVoice random_voice(Rng& rng) {
  // US and British English; espeak-ng's male/female variants change formants and pitch.
  static const char* const kLangs[] = {"en-us", "en"};
  static const char* const kVariants[] = {"m1", "m3", "f1", "f3"};
  SpeechVoice v;
  v.name = std::string(kLangs[rng.below(std::size(kLangs))]) + "+" + kVariants[rng.below(std::size(kVariants))];
  v.rate_wpm = 150 + static_cast<int>(rng.below(61));  // 150..210 wpm
  v.pitch = 35 + static_cast<int>(rng.below(31));      // 35..65
  v.range = 30 + static_cast<int>(rng.below(41));      // 30..70
  v.noise_seed = static_cast<unsigned>(rng.next() >> 32);
  return v;
}

std::vector<float> speak(const std::string& text, const SpeechVoice& v) {
  std::vector<short> pcm;
  int rate = 0;
  {
    std::lock_guard<std::mutex> lock(g_espeak);
    init_locked();
    if (espeak_SetVoiceByName(v.name.c_str()) != EE_OK) fail("espeak-ng: unknown voice '", v.name, "'");
    if (espeak_SetParameter(espeakRATE, v.rate_wpm, 0) != EE_OK ||
        espeak_SetParameter(espeakPITCH, v.pitch, 0) != EE_OK ||
        espeak_SetParameter(espeakRANGE, v.range, 0) != EE_OK)
      fail("espeak-ng: cannot set rate/pitch/range for voice '", v.name, "'");
    std::srand(v.noise_seed);  // espeak-ng's noise comes from rand() (see the header)
    const espeak_ERROR err = espeak_Synth(text.c_str(), text.size() + 1, 0, POS_CHARACTER, 0,
                                          espeakCHARS_UTF8, nullptr, &pcm);
    if (err != EE_OK) fail("espeak-ng: synthesis failed (error ", static_cast<int>(err), ") for: ", text);
    espeak_Synchronize();
    rate = g_rate;
  }
  std::vector<float> x(pcm.size());
  for (size_t i = 0; i < pcm.size(); ++i) x[i] = static_cast<float>(pcm[i]) / 32768.0f;
  return audio::resample(x, rate, audio::kSampleRate);
}

}  // namespace mot::data
