// Log-mel features of 16 kHz mono audio at 25 frames per second: the paper's speech
// unit rate (one unit per 40 ms = 640 samples).
//
// Framing: frame t covers the hop span [t*hop, (t+1)*hop) and its analysis window is
// centred on that span: it starts at t*hop - (win - hop)/2 (samples outside the
// signal count as zero). A signal of n samples has floor(n / hop) frames, so one
// second gives exactly 25 frames, a trailing partial hop (< 40 ms) is dropped, and
// decoding T frames gives back T*hop samples aligned with the input.
//
// Each frame: periodic Hann window of win samples, zero-padded to n_fft, FFT
// magnitude |X_k| (k = 0 .. n_fft/2; bin k is k*sr/n_fft Hz), mel[m] = sum_k
// F[m][k] |X_k|, feature = ln(max(mel[m], log_floor)). Magnitude (not power) mels
// with a natural-log floor of 1e-5, as in HiFi-GAN-style vocoder features.
//
// Mel filterbank: HTK mel scale, mel(f) = 2595 log10(1 + f/700). n_mels triangles with
// edges at n_mels+2 points equally spaced in mel from f_min to f_max; triangle m rises
// from edge m to its peak 1 at edge m+1 (its centre) and falls to edge m+2, evaluated
// at the FFT bin frequencies; no area normalisation (librosa htk=True, norm=None).
#pragma once
#include <complex>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mot/audio/fft.hpp"

namespace mot::audio {

struct MelConfig {
  int sample_rate = 16000;
  int n_fft = 2048;        // 7.8125 Hz bins: at least 4 bins under the narrowest (lowest) filters
  int win_length = 1280;   // 80 ms Hann window, two hops
  int hop_length = 640;    // 40 ms: 25 frames per second
  int n_mels = 80;
  float f_min = 0.0f;      // Hz
  float f_max = 8000.0f;   // Hz, at most sample_rate / 2
  float log_floor = 1e-5f;

  int bins() const { return n_fft / 2 + 1; }
  // floor(n_samples / hop_length).
  size_t frames(size_t n_samples) const { return n_samples / static_cast<size_t>(hop_length); }
  // First sample of frame t's analysis window (negative before the signal start).
  long long window_start(size_t t) const {
    return static_cast<long long>(t) * hop_length - (win_length - hop_length) / 2;
  }
  // Throws mot::Error(origin + ": ...") unless 8000 <= sample_rate <= 192000,
  // hop <= win <= n_fft <= 65536 (n_fft even), 1 <= n_mels <= 512,
  // 0 <= f_min < f_max <= sample_rate/2, every triangle covers at least one FFT bin,
  // and 0 < log_floor < 1.
  void validate(const std::string& origin) const;
  bool operator==(const MelConfig&) const = default;
};

// HTK mel scale.
double hz_to_mel(double hz);
double mel_to_hz(double mel);
// Centre frequency (Hz) of triangle m: mel_to_hz of edge m+1.
double mel_band_centre_hz(const MelConfig& cfg, int m);
// n_mels x bins(), row-major (the matrix F above).
std::vector<float> mel_filterbank(const MelConfig& cfg);
// Periodic Hann window: w[i] = 0.5 - 0.5 cos(2 pi i / win_length).
std::vector<float> hann_window(int win_length);

// Computes STFT magnitudes and log-mel features. Owns its FFT plan (made once, in the
// constructor) and work buffers: reuse one object for many signals; give each thread
// its own object.
class MelSpectrogram {
 public:
  explicit MelSpectrogram(const MelConfig& cfg = {});  // validates cfg

  const MelConfig& config() const { return cfg_; }
  size_t frames(size_t n_samples) const { return cfg_.frames(n_samples); }
  const std::vector<float>& filterbank() const { return fb_; }

  // Complex spectrum (bins() values) of frame t of `samples` (t < frames(n)).
  void spectrum(std::span<const float> samples, size_t t, std::complex<float>* out);
  // |spectrum| of frame t (bins() values).
  void magnitude(std::span<const float> samples, size_t t, float* out);
  // frames(n) x n_mels log-mel features, row-major.
  std::vector<float> log_mel(std::span<const float> samples);
  // The same from linear magnitudes (n_frames x bins): mel projection, floor, log.
  std::vector<float> log_mel_from_magnitude(const float* magnitude, size_t n_frames) const;

 private:
  void log_mel_row(const float* mag, float* out) const;  // one frame: bins -> n_mels

  MelConfig cfg_;
  std::vector<float> window_;
  std::vector<float> fb_;                     // n_mels x bins
  std::vector<int> band_lo_, band_hi_;        // nonzero bin range [lo, hi) of each triangle
  std::unique_ptr<RealFft> fft_;
  std::vector<float> frame_;                  // n_fft, windowed and zero-padded
  std::vector<std::complex<float>> spec_;     // bins
  std::vector<float> mag_;                    // bins
};

}  // namespace mot::audio
