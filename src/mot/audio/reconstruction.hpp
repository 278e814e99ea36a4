// How well speech survives units: original audio -> log-mel A -> units -> mean
// log-mel per unit Q -> Griffin-Lim audio -> its log-mel R, compared frame by frame
// (all three have floor(n / hop) frames, aligned).
//
// Log-mel distance in dB: features are ln(mel magnitude), so a difference d is
// 20 log10(e) d = 8.686 d dB; per frame the RMS over bands, then the mean over frames
// (like mel-cepstral distortion, on mel bands).
#pragma once
#include <cstddef>
#include <span>

#include "mot/audio/griffin_lim.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"

namespace mot::audio {

// Mean over frames of sqrt(mean over bands of (8.686 (a - b))^2), in dB; 0 for no frames.
double log_mel_distance_db(const float* a, const float* b, size_t n_frames, int n_mels);
// ||exp(a) - exp(b)||_F / ||exp(a)||_F over all frames and bands (mel magnitudes).
double mel_spectral_convergence(const float* a, const float* b, size_t n_frames, int n_mels);

struct Reconstruction {
  size_t frames = 0;
  double quantisation_db = 0;       // A vs Q: what the codebook loses
  double vocoder_db = 0;            // Q vs R: what mel inversion + Griffin-Lim lose against their target
  double total_db = 0;              // A vs R: end to end
  double spectral_convergence = 0;  // A vs R, mel magnitudes
  double quantisation_mse = 0;      // mean squared normalised-feature error per frame (the k-means distortion)
};

// Runs the whole chain on 16 kHz samples. mot::Error if the signal is shorter than one
// frame (640 samples).
Reconstruction measure_reconstruction(const UnitCodebook& cb, std::span<const float> samples,
                                      const GriffinLimConfig& gl = {});

}  // namespace mot::audio
