// data/tokenize/ holds the learned tokenizers: text (text_tokenizer.hpp), image VQ
// (vq.hpp), speech units (here; namespace mot::audio, beside the mel and Griffin-Lim
// code it builds on), all clustering with the one k-means (kmeans.hpp).
//
// Speech unit codebook: discrete units at 25 Hz for speech as a token modality (the
// paper's Chameleon+Speech setting: a 500-unit codebook at 25 Hz).
//
// A unit is a k-means centroid of log-mel frames (mel.hpp) after per-band
// normalisation z = (x - mean) / std, with mean and std measured on the training
// frames (so each band weighs the same in the distance). Encoding maps each frame to
// its nearest centroid; decoding maps each unit to its centroid de-normalised, which
// is the mean log-mel of the training frames in that unit, and griffin_lim.hpp turns
// that back into audio.
//
// File: safetensors with tensors "centroids" F32 [units, n_mels] (normalised space),
// "mean" F32 [n_mels], "std" F32 [n_mels]; metadata format="mot-speech-units",
// version="1", units, the MelConfig fields (sample_rate, n_fft, win_length,
// hop_length, n_mels, f_min, f_max, log_floor) and mel_scale="htk",
// window="hann-periodic", spectrum="magnitude", log="ln" naming the fixed parts of the
// feature definition.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "mot/audio/griffin_lim.hpp"
#include "mot/audio/mel.hpp"

namespace mot::audio {

struct UnitTrainOptions {
  int units = 500;
  uint64_t seed = 0;
  int iters = 50;          // Lloyd iterations (fewer if converged)
  size_t max_frames = 0;   // learn on a seeded subsample of at most this many frames (0 = all)
};

struct UnitCodebook {
  MelConfig mel;
  int units = 0;
  std::vector<float> mean, stddev;  // n_mels each (file tensors "mean", "std")
  std::vector<float> centroids;     // units x n_mels, normalised space

  // Learns the codebook from n_frames x mel.n_mels log-mel frames (e.g. several
  // utterances' MelSpectrogram::log_mel concatenated). k-means++ then Lloyd
  // (kmeans.hpp); deterministic for a fixed seed. progress(iter, iters, distortion)
  // as in kmeans(). mot::Error on fewer frames than units or non-finite features.
  static UnitCodebook train(const float* log_mel, size_t n_frames, const MelConfig& mel, const UnitTrainOptions& opt,
                            const std::function<void(int, int, double)>& progress = {});

  // Unit id (in [0, units)) of each of n_frames x n_mels log-mel frames.
  std::vector<uint32_t> encode(const float* log_mel, size_t n_frames) const;
  // n x n_mels log-mel: each unit's mean log-mel. mot::Error on an id >= units.
  std::vector<float> decode_mel(const uint32_t* ids, size_t n) const;

  void save(const std::string& path) const;  // atomic; validates first
  // Validates format, metadata, shapes and values; mot::Error naming the path.
  static UnitCodebook load(const std::string& path);
  // Throws mot::Error(origin + ": ...") unless mel is valid, units in [1, 2^20], the
  // arrays have the right sizes, every value is finite and every stddev > 0.
  void validate(const std::string& origin) const;
};

// 16 kHz mono samples -> one unit per 40 ms (floor(n / 640) units). Uses `mel` (its
// config must equal cb.mel) so many calls share one FFT plan.
std::vector<uint32_t> audio_to_units(const UnitCodebook& cb, MelSpectrogram& mel, std::span<const float> samples);
// The same, planning an FFT for this call.
std::vector<uint32_t> audio_to_units(const UnitCodebook& cb, std::span<const float> samples);
// Units -> n * 640 samples at 16 kHz (mean log-mel per unit, mel inversion, Griffin-Lim).
std::vector<float> units_to_audio(const UnitCodebook& cb, const uint32_t* ids, size_t n,
                                  const GriffinLimConfig& gl = {});

}  // namespace mot::audio
