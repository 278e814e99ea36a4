#include "mot/audio/reconstruction.hpp"

#include <cmath>
#include <numbers>
#include <vector>

#include "mot/core/error.hpp"

namespace mot::audio {
namespace {

const double kDbPerNeper = 20.0 / std::numbers::ln10;  // 8.686

}  // namespace

double log_mel_distance_db(const float* a, const float* b, size_t n_frames, int n_mels) {
  if (n_frames == 0) return 0.0;
  double total = 0;
  for (size_t t = 0; t < n_frames; ++t) {
    double s = 0;
    for (int m = 0; m < n_mels; ++m) {
      const double d = static_cast<double>(a[t * n_mels + m]) - b[t * n_mels + m];
      s += d * d;
    }
    total += std::sqrt(s / n_mels);
  }
  return kDbPerNeper * total / static_cast<double>(n_frames);
}

double mel_spectral_convergence(const float* a, const float* b, size_t n_frames, int n_mels) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n_frames * static_cast<size_t>(n_mels); ++i) {
    const double ea = std::exp(static_cast<double>(a[i])), eb = std::exp(static_cast<double>(b[i]));
    num += (ea - eb) * (ea - eb);
    den += ea * ea;
  }
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

Reconstruction measure_reconstruction(const UnitCodebook& cb, std::span<const float> samples,
                                      const GriffinLimConfig& gl) {
  cb.validate("measure_reconstruction");
  MelSpectrogram mel(cb.mel);
  const size_t T = mel.frames(samples.size());
  if (T == 0)
    fail("measure_reconstruction: ", samples.size(), " samples are shorter than one frame (", cb.mel.hop_length, ")");
  const int M = cb.mel.n_mels;
  const std::vector<float> A = mel.log_mel(samples);
  const std::vector<uint32_t> ids = cb.encode(A.data(), T);
  const std::vector<float> Q = cb.decode_mel(ids.data(), T);
  const std::vector<float> audio = log_mel_to_audio(Q.data(), T, cb.mel, gl);
  const std::vector<float> R = mel.log_mel(audio);  // audio has T * hop samples: T frames

  Reconstruction r;
  r.frames = T;
  r.quantisation_db = log_mel_distance_db(A.data(), Q.data(), T, M);
  r.vocoder_db = log_mel_distance_db(Q.data(), R.data(), T, M);
  r.total_db = log_mel_distance_db(A.data(), R.data(), T, M);
  r.spectral_convergence = mel_spectral_convergence(A.data(), R.data(), T, M);
  double se = 0;
  for (size_t t = 0; t < T; ++t)
    for (int m = 0; m < M; ++m) {
      const double z = (static_cast<double>(A[t * M + m]) - cb.mean[m]) / cb.stddev[m] -
                       cb.centroids[static_cast<size_t>(ids[t]) * M + m];
      se += z * z;
    }
  r.quantisation_mse = se / static_cast<double>(T);
  return r;
}

}  // namespace mot::audio
