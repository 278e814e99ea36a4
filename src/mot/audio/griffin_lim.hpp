// Log-mel features back to a waveform, so decoded speech units can be listened to.
//
// 1. Mel -> linear magnitude: mel = exp(log-mel), then a non-negative spectrum s
//    with F s = mel (F the mel filterbank) by multiplicative updates for the
//    Kullback-Leibler divergence (Lee and Seung 2001), s <- s * F^T(mel / F s) / F^T 1,
//    starting from the band-weighted interpolation F^T mel / F^T 1. On a 200 Hz
//    harmonic tone 50 updates fit the mel bands to ~0.05 dB; the pseudo-inverse with
//    negative values clamped to zero misses them by ~10 dB (it fills the valleys
//    between harmonics), which is why it is not used.
// 2. Magnitude -> waveform: fast Griffin-Lim (Perraudin, Balazs and Sondergaard 2013,
//    the momentum variant librosa uses): alternately impose the target magnitudes and
//    project onto consistent spectrograms (STFT of the least-squares inverse STFT),
//    with the framing of mel.hpp, so T frames give T*hop samples.
// Deterministic for a fixed seed (the initial phases).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mot/audio/mel.hpp"

namespace mot::audio {

struct GriffinLimConfig {
  // With momentum, more iterations gain little: from a 200 Hz tone's true STFT
  // magnitude, 3.7 dB log-mel error at 32 iterations, 2.5 dB at 100.
  int iters = 32;
  float momentum = 0.99f;  // 0 = the original Griffin-Lim algorithm
  uint64_t seed = 0;       // initial phases, uniform in [0, 2 pi)
};

inline constexpr int kMelInverseIters = 50;

// n_frames x n_mels log-mel -> n_frames x bins linear magnitudes (step 1), `iters`
// multiplicative updates. Bins outside every triangle (below f_min, above f_max) get
// zero. mot::Error on non-finite features.
std::vector<float> log_mel_to_magnitude(const float* log_mel, size_t n_frames, const MelConfig& cfg,
                                        int iters = kMelInverseIters);

// n_frames x bins magnitudes -> n_frames * hop samples (step 2). Samples are not
// clipped or normalised (write_wav clips to [-1, 1]). mot::Error on a bad config.
std::vector<float> griffin_lim(const float* magnitude, size_t n_frames, const MelConfig& cfg,
                               const GriffinLimConfig& gl = {});

// Both steps.
std::vector<float> log_mel_to_audio(const float* log_mel, size_t n_frames, const MelConfig& cfg,
                                    const GriffinLimConfig& gl = {});

}  // namespace mot::audio
