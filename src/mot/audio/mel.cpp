#include "mot/audio/mel.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "mot/core/error.hpp"

namespace mot::audio {

double hz_to_mel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
double mel_to_hz(double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); }

namespace {

// Edge e (0 .. n_mels+1) of the triangles, in Hz.
double edge_hz(const MelConfig& cfg, int e) {
  const double lo = hz_to_mel(cfg.f_min), hi = hz_to_mel(cfg.f_max);
  return mel_to_hz(lo + (hi - lo) * e / (cfg.n_mels + 1));
}

// The filterbank in double, for both the float matrix and the validity check.
std::vector<double> filterbank_f64(const MelConfig& cfg) {
  const int B = cfg.bins();
  std::vector<double> fb(static_cast<size_t>(cfg.n_mels) * B, 0.0);
  for (int m = 0; m < cfg.n_mels; ++m) {
    const double l = edge_hz(cfg, m), c = edge_hz(cfg, m + 1), r = edge_hz(cfg, m + 2);
    for (int k = 0; k < B; ++k) {
      const double f = static_cast<double>(k) * cfg.sample_rate / cfg.n_fft;
      const double w = std::min((f - l) / (c - l), (r - f) / (r - c));
      fb[static_cast<size_t>(m) * B + k] = std::max(0.0, w);
    }
  }
  return fb;
}

}  // namespace

double mel_band_centre_hz(const MelConfig& cfg, int m) { return edge_hz(cfg, m + 1); }

void MelConfig::validate(const std::string& origin) const {
  if (sample_rate < 8000 || sample_rate > 192000)
    fail(origin, ": mel sample_rate ", sample_rate, " is not in [8000, 192000]");
  if (hop_length < 1 || win_length < hop_length || n_fft < win_length || n_fft > 65536 || n_fft % 2 != 0)
    fail(origin, ": mel framing needs 1 <= hop_length <= win_length <= n_fft <= 65536 with n_fft even (hop ",
         hop_length, ", win ", win_length, ", n_fft ", n_fft, ")");
  if (n_mels < 1 || n_mels > 512) fail(origin, ": n_mels ", n_mels, " is not in [1, 512]");
  if (!(f_min >= 0.0f && f_min < f_max && f_max <= sample_rate / 2.0f))
    fail(origin, ": mel band needs 0 <= f_min < f_max <= sample_rate/2 (f_min ", f_min, ", f_max ", f_max, ")");
  if (!(log_floor > 0.0f && log_floor < 1.0f)) fail(origin, ": log_floor ", log_floor, " is not in (0, 1)");
  const std::vector<double> fb = filterbank_f64(*this);
  for (int m = 0; m < n_mels; ++m) {
    const double* row = fb.data() + static_cast<size_t>(m) * bins();
    if (*std::max_element(row, row + bins()) <= 0.0)
      fail(origin, ": mel band ", m, " covers no FFT bin (too many mels for n_fft ", n_fft, ")");
  }
}

std::vector<float> mel_filterbank(const MelConfig& cfg) {
  const std::vector<double> fb = filterbank_f64(cfg);
  return {fb.begin(), fb.end()};
}

std::vector<float> hann_window(int win_length) {
  std::vector<float> w(static_cast<size_t>(win_length));
  for (int i = 0; i < win_length; ++i)
    w[i] = static_cast<float>(0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * i / win_length));
  return w;
}

MelSpectrogram::MelSpectrogram(const MelConfig& cfg) : cfg_(cfg) {
  cfg_.validate("mel config");
  window_ = hann_window(cfg_.win_length);
  fb_ = mel_filterbank(cfg_);
  const int B = cfg_.bins();
  band_lo_.resize(cfg_.n_mels);
  band_hi_.resize(cfg_.n_mels);
  for (int m = 0; m < cfg_.n_mels; ++m) {
    const float* row = fb_.data() + static_cast<size_t>(m) * B;
    int lo = 0, hi = B;
    while (lo < B && row[lo] == 0.0f) ++lo;
    while (hi > lo && row[hi - 1] == 0.0f) --hi;
    band_lo_[m] = lo;
    band_hi_[m] = hi;
  }
  fft_ = std::make_unique<RealFft>(cfg_.n_fft);
  frame_.assign(static_cast<size_t>(cfg_.n_fft), 0.0f);
  spec_.resize(static_cast<size_t>(B));
  mag_.resize(static_cast<size_t>(B));
}

void MelSpectrogram::spectrum(std::span<const float> samples, size_t t, std::complex<float>* out) {
  if (t >= frames(samples.size())) fail("mel: frame ", t, " is past the signal's ", frames(samples.size()), " frames");
  const long long start = cfg_.window_start(t), n = static_cast<long long>(samples.size());
  // frame_[win .. n_fft) stays zero (the padding).
  for (int i = 0; i < cfg_.win_length; ++i) {
    const long long j = start + i;
    frame_[i] = (j >= 0 && j < n) ? samples[static_cast<size_t>(j)] * window_[i] : 0.0f;
  }
  fft_->forward(frame_.data(), out);
}

void MelSpectrogram::magnitude(std::span<const float> samples, size_t t, float* out) {
  spectrum(samples, t, spec_.data());
  for (int k = 0; k < cfg_.bins(); ++k) out[k] = std::abs(spec_[k]);
}

std::vector<float> MelSpectrogram::log_mel(std::span<const float> samples) {
  const size_t T = frames(samples.size());
  const int M = cfg_.n_mels;
  std::vector<float> out(T * M);
  for (size_t t = 0; t < T; ++t) {
    magnitude(samples, t, mag_.data());
    log_mel_row(mag_.data(), out.data() + t * M);
  }
  return out;
}

std::vector<float> MelSpectrogram::log_mel_from_magnitude(const float* magnitude, size_t n_frames) const {
  const int M = cfg_.n_mels, B = cfg_.bins();
  std::vector<float> out(n_frames * M);
  for (size_t t = 0; t < n_frames; ++t) log_mel_row(magnitude + t * B, out.data() + t * M);
  return out;
}

void MelSpectrogram::log_mel_row(const float* mag, float* out) const {
  const int B = cfg_.bins();
  for (int m = 0; m < cfg_.n_mels; ++m) {
    const float* row = fb_.data() + static_cast<size_t>(m) * B;
    double s = 0;  // double, fixed order: the same frame always gives the same features
    for (int k = band_lo_[m]; k < band_hi_[m]; ++k) s += static_cast<double>(row[k]) * mag[k];
    out[m] = std::log(std::max(static_cast<float>(s), cfg_.log_floor));
  }
}

}  // namespace mot::audio
