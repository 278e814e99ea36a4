#include "mot/audio/griffin_lim.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <numbers>

#include "mot/audio/fft.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"

namespace mot::audio {
namespace {

using cfloat = std::complex<float>;

// The STFT of mel.hpp over a signal of exactly T*hop samples, and its least-squares
// inverse: x[n] = sum_t w[n - s_t] y_t[n - s_t] / sum_t w[n - s_t]^2 over the frames
// covering n (y_t = inverse FFT of frame t), which is the signal whose STFT is
// nearest to the given one (Griffin and Lim 1984). The plans are made once here.
class Stft {
 public:
  Stft(const MelConfig& cfg, size_t T)
      : cfg_(cfg), T_(T), L_(T * cfg.hop_length), window_(hann_window(cfg.win_length)), fft_(cfg.n_fft),
        buf_(static_cast<size_t>(cfg.n_fft), 0.0f), inv_norm_(L_, 0.0f) {
    std::vector<double> den(L_, 0.0);
    for (size_t t = 0; t < T_; ++t)
      for_span(t, [&](size_t n, int i) { den[n] += static_cast<double>(window_[i]) * window_[i]; });
    // Every sample lies under at least its own frame's window centre (hop <= win), so
    // den > 0; the guard only protects degenerate configs.
    for (size_t n = 0; n < L_; ++n) inv_norm_[n] = static_cast<float>(1.0 / std::max(den[n], 1e-12));
  }

  void analyse(const std::vector<float>& x, cfloat* S) {
    const int B = cfg_.bins();
    for (size_t t = 0; t < T_; ++t) {
      std::fill(buf_.begin(), buf_.end(), 0.0f);
      for_span(t, [&](size_t n, int i) { buf_[i] = x[n] * window_[i]; });
      fft_.forward(buf_.data(), S + t * B);
    }
  }

  void synthesise(const cfloat* S, std::vector<float>& x) {
    const int B = cfg_.bins();
    const float scale = 1.0f / static_cast<float>(cfg_.n_fft);  // RealFft::inverse is unnormalised
    x.assign(L_, 0.0f);
    for (size_t t = 0; t < T_; ++t) {
      fft_.inverse(S + t * B, buf_.data());
      for_span(t, [&](size_t n, int i) { x[n] += buf_[i] * scale * window_[i]; });
    }
    for (size_t n = 0; n < L_; ++n) x[n] *= inv_norm_[n];
  }

 private:
  // Calls f(sample index, window index) for the samples of frame t inside [0, L).
  template <class F>
  void for_span(size_t t, F&& f) const {
    const long long s = cfg_.window_start(t);
    const int i0 = static_cast<int>(std::max<long long>(0, -s));
    const int i1 = static_cast<int>(std::min<long long>(cfg_.win_length, static_cast<long long>(L_) - s));
    for (int i = i0; i < i1; ++i) f(static_cast<size_t>(s + i), i);
  }

  MelConfig cfg_;
  size_t T_, L_;
  std::vector<float> window_;
  RealFft fft_;
  std::vector<float> buf_;
  std::vector<float> inv_norm_;
};

}  // namespace

std::vector<float> log_mel_to_magnitude(const float* log_mel, size_t n_frames, const MelConfig& cfg, int iters) {
  cfg.validate("mel to magnitude");
  if (iters < 0 || iters > 100000) fail("mel to magnitude: iters ", iters, " is not in [0, 100000]");
  const int M = cfg.n_mels, B = cfg.bins();
  const std::vector<float> F = mel_filterbank(cfg);
  // Each triangle's nonzero bins [lo, hi), and F^T 1 (zero outside every triangle).
  std::vector<int> lo(M), hi(M);
  std::vector<double> colsum(static_cast<size_t>(B), 0.0);
  for (int m = 0; m < M; ++m) {
    const float* row = F.data() + static_cast<size_t>(m) * B;
    lo[m] = 0;
    hi[m] = B;
    while (lo[m] < B && row[lo[m]] == 0.0f) ++lo[m];
    while (hi[m] > lo[m] && row[hi[m] - 1] == 0.0f) --hi[m];
    for (int k = lo[m]; k < hi[m]; ++k) colsum[k] += row[k];
  }
  for (size_t i = 0; i < n_frames * static_cast<size_t>(M); ++i)
    if (!std::isfinite(log_mel[i])) fail("mel to magnitude: frame ", i / M, " band ", i % M, " is not a finite number");
  std::vector<float> mag(n_frames * B);
  // Frames are independent: parallel, and the same result for any thread count.
#pragma omp parallel if (n_frames > 16)
  {
    std::vector<double> mel(M), ratio(M), s(B), back(B);
    // back = F^T v for a band vector v (sparse: only each triangle's bins).
    auto transpose_times = [&](const std::vector<double>& v) {
      std::fill(back.begin(), back.end(), 0.0);
      for (int m = 0; m < M; ++m) {
        const float* row = F.data() + static_cast<size_t>(m) * B;
        for (int k = lo[m]; k < hi[m]; ++k) back[k] += row[k] * v[m];
      }
    };
#pragma omp for schedule(static)
    for (size_t t = 0; t < n_frames; ++t) {
      for (int m = 0; m < M; ++m) mel[m] = std::exp(static_cast<double>(log_mel[t * M + m]));
      transpose_times(mel);
      for (int k = 0; k < B; ++k) s[k] = colsum[k] > 0 ? back[k] / colsum[k] : 0.0;
      for (int it = 0; it < iters; ++it) {
        for (int m = 0; m < M; ++m) {
          const float* row = F.data() + static_cast<size_t>(m) * B;
          double fs = 0;
          for (int k = lo[m]; k < hi[m]; ++k) fs += row[k] * s[k];
          ratio[m] = mel[m] / std::max(fs, 1e-300);
        }
        transpose_times(ratio);
        for (int k = 0; k < B; ++k)
          if (colsum[k] > 0) s[k] *= back[k] / colsum[k];
      }
      for (int k = 0; k < B; ++k) mag[t * B + k] = static_cast<float>(s[k]);
    }
  }
  return mag;
}

std::vector<float> griffin_lim(const float* magnitude, size_t n_frames, const MelConfig& cfg,
                               const GriffinLimConfig& gl) {
  cfg.validate("griffin-lim");
  if (gl.iters < 0 || gl.iters > 10000) fail("griffin-lim: iters ", gl.iters, " is not in [0, 10000]");
  if (!(gl.momentum >= 0.0f && gl.momentum < 1.0f)) fail("griffin-lim: momentum ", gl.momentum, " is not in [0, 1)");
  if (n_frames == 0) return {};
  const size_t B = static_cast<size_t>(cfg.bins()), N = n_frames * B;
  Stft stft(cfg, n_frames);
  Rng rng(gl.seed);
  std::vector<cfloat> angles(N), rebuilt(N), tprev(N, cfloat(0.0f, 0.0f)), S(N);
  for (size_t i = 0; i < N; ++i) {
    if (!(magnitude[i] >= 0.0f) || !std::isfinite(magnitude[i]))
      fail("griffin-lim: magnitude ", i, " is negative or not finite");
    angles[i] = std::polar(1.0f, static_cast<float>(2.0 * std::numbers::pi * rng.uniform()));
  }
  const float beta = gl.momentum / (1.0f + gl.momentum);
  std::vector<float> x;
  for (int it = 0; it < gl.iters; ++it) {
    for (size_t i = 0; i < N; ++i) S[i] = magnitude[i] * angles[i];
    stft.synthesise(S.data(), x);
    stft.analyse(x, rebuilt.data());
    for (size_t i = 0; i < N; ++i) {
      const cfloat a = rebuilt[i] - beta * tprev[i];
      const float r = std::abs(a);
      angles[i] = r > 1e-30f ? a / r : cfloat(1.0f, 0.0f);  // no phase information: any unit phase
    }
    tprev.swap(rebuilt);
  }
  for (size_t i = 0; i < N; ++i) S[i] = magnitude[i] * angles[i];
  stft.synthesise(S.data(), x);
  return x;
}

std::vector<float> log_mel_to_audio(const float* log_mel, size_t n_frames, const MelConfig& cfg,
                                    const GriffinLimConfig& gl) {
  const std::vector<float> mag = log_mel_to_magnitude(log_mel, n_frames, cfg);
  return griffin_lim(mag.data(), n_frames, cfg, gl);
}

}  // namespace mot::audio
