// Speech tokenizer features (src/mot/audio/mel.hpp): frame count at 25 Hz, a sine's
// peak in its FFT bin and in the nearest mel band, and whole log-mel frames against a
// reference computed here from the formulas (naive DFT in double, HTK triangles).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <numbers>
#include <vector>

#include "mot/audio/mel.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"

using mot::audio::MelConfig;
using mot::audio::MelSpectrogram;

namespace {

constexpr double kPi = std::numbers::pi;

std::vector<float> sine(double hz, double amp, size_t n, int rate = 16000) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(amp * std::sin(2 * kPi * hz * i / rate));
  return x;
}

// HTK mel scale, written out independently of the library.
double htk_mel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
double htk_hz(double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); }

// Reference log-mel of frame t: periodic Hann window of 1280 centred on the frame's
// 640-sample span, naive DFT over 2048 points, magnitude, HTK triangles, ln(max(., 1e-5)).
std::vector<double> reference_log_mel(const std::vector<float>& x, size_t t) {
  const int win = 1280, hop = 640, nfft = 2048, M = 80, B = nfft / 2 + 1;
  const long long start = static_cast<long long>(t) * hop - (win - hop) / 2;
  std::vector<double> frame(win);
  for (int i = 0; i < win; ++i) {
    const long long j = start + i;
    const double w = 0.5 - 0.5 * std::cos(2 * kPi * i / win);
    frame[i] = (j >= 0 && j < static_cast<long long>(x.size())) ? x[j] * w : 0.0;
  }
  std::vector<double> mag(B);
  for (int k = 0; k < B; ++k) {
    std::complex<double> s = 0;
    for (int i = 0; i < win; ++i) s += frame[i] * std::polar(1.0, -2 * kPi * k * i / nfft);
    mag[k] = std::abs(s);
  }
  std::vector<double> out(M);
  const double top = htk_mel(8000.0);
  for (int m = 0; m < M; ++m) {
    const double l = htk_hz(top * m / (M + 1)), c = htk_hz(top * (m + 1) / (M + 1));
    const double r = htk_hz(top * (m + 2) / (M + 1));
    double s = 0;
    for (int k = 0; k < B; ++k) {
      const double f = k * 16000.0 / nfft;
      s += std::max(0.0, std::min((f - l) / (c - l), (r - f) / (r - c))) * mag[k];
    }
    out[m] = std::log(std::max(s, 1e-5));
  }
  return out;
}

}  // namespace

TEST(AudioMel, FrameCountIsFloorOfSamplesOverHopAt25Hz) {
  MelSpectrogram mel;
  EXPECT_EQ(mel.config().hop_length, 640);
  EXPECT_EQ(mel.config().sample_rate / mel.config().hop_length, 25);
  for (size_t n : {size_t{0}, size_t{1}, size_t{639}, size_t{640}, size_t{641}, size_t{1279}, size_t{16000},
                   size_t{3 * 16000 + 639}}) {
    const std::vector<float> x(n, 0.1f);
    EXPECT_EQ(mel.frames(n), n / 640) << n;
    EXPECT_EQ(mel.log_mel(x).size(), (n / 640) * 80) << n;
  }
  EXPECT_EQ(mel.frames(16000), 25u);  // one second: 25 units
}

TEST(AudioMel, SinePeaksInItsFftBin) {
  MelSpectrogram mel;
  const MelConfig& c = mel.config();
  std::vector<float> mag(c.bins());
  for (double hz : {1000.0, 1234.5, 300.0, 6200.0}) {
    const std::vector<float> x = sine(hz, 0.5, 16000);
    mel.magnitude(x, 12, mag.data());
    const int peak = static_cast<int>(std::max_element(mag.begin(), mag.end()) - mag.begin());
    EXPECT_EQ(peak, static_cast<int>(std::lround(hz * c.n_fft / c.sample_rate))) << hz;
  }
  // 1000 Hz is exactly bin 128: the peak is amplitude/2 * sum(window) = 0.25 * 640.
  const std::vector<float> x = sine(1000.0, 0.5, 16000);
  mel.magnitude(x, 12, mag.data());
  EXPECT_NEAR(mag[128], 160.0, 0.5);
}

TEST(AudioMel, SinePeaksInTheMelBandCentredOnIt) {
  MelSpectrogram mel;
  const double top = htk_mel(8000.0);
  for (int m : {8, 20, 30, 45, 60, 75}) {
    const double centre = htk_hz(top * (m + 1) / 81.0);
    EXPECT_NEAR(mot::audio::mel_band_centre_hz(mel.config(), m), centre, 1e-6 * centre);
    const std::vector<float> x = sine(centre, 0.5, 8000);
    const std::vector<float> lm = mel.log_mel(x);
    const float* f = lm.data() + 5 * 80;  // a frame well inside the signal
    EXPECT_EQ(std::max_element(f, f + 80) - f, m) << "band " << m << " centre " << centre << " Hz";
  }
}

TEST(AudioMel, LogMelMatchesAReferenceComputation) {
  // Two tones over white noise, so every band is well above the log floor.
  mot::Rng rng(7);
  std::vector<float> x = sine(440.0, 0.3, 8000);
  const std::vector<float> y = sine(3000.0, 0.2, 8000);
  for (size_t i = 0; i < x.size(); ++i) x[i] += y[i] + static_cast<float>(0.01 * rng.normal());
  MelSpectrogram mel;
  const std::vector<float> lm = mel.log_mel(x);
  ASSERT_EQ(lm.size(), 12u * 80);
  for (size_t t : {size_t{0}, size_t{6}, size_t{11}}) {  // first (zero-padded), middle, last frame
    const std::vector<double> ref = reference_log_mel(x, t);
    for (int m = 0; m < 80; ++m) EXPECT_NEAR(lm[t * 80 + m], ref[m], 1e-3) << "frame " << t << " band " << m;
  }
  // Silence sits exactly at the floor: ln(1e-5).
  const std::vector<float> silent(6400, 0.0f);
  for (float v : mel.log_mel(silent)) EXPECT_FLOAT_EQ(v, std::log(1e-5f));
}

TEST(AudioMel, InvalidConfigsAreRejected) {
  MelConfig c;
  c.n_fft = 1000;  // smaller than the window
  EXPECT_THROW(MelSpectrogram{c}, mot::Error);
  c = MelConfig{};
  c.f_max = 9000;  // above Nyquist
  EXPECT_THROW(MelSpectrogram{c}, mot::Error);
  c = MelConfig{};
  c.n_fft = 1280;
  c.n_mels = 400;  // the lowest triangles fall between FFT bins
  EXPECT_THROW(c.validate("cfg"), mot::Error);
  c = MelConfig{};
  c.n_fft = 1280;  // the brief's other choice is valid too
  EXPECT_NO_THROW(MelSpectrogram{c});
}
