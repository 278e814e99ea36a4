// Sample-rate conversion of mono float audio through libsamplerate (Debian
// libsamplerate0-dev, band-limited sinc interpolation, SRC_SINC_MEDIUM_QUALITY: about
// 97 dB stop-band attenuation, 90% of the output band kept). Deterministic.
#pragma once
#include <cstddef>
#include <span>
#include <vector>

namespace mot::audio {

// Streaming converter, for inputs that arrive in chunks (a file read block by block):
// the whole input never has to be in memory, only the output.
class Resampler {
 public:
  // Rates in [1, 1e6] Hz with to/from in [1/256, 256] (libsamplerate's range), else
  // mot::Error.
  Resampler(int from_rate, int to_rate);
  ~Resampler();
  Resampler(const Resampler&) = delete;
  Resampler& operator=(const Resampler&) = delete;

  // Converts n input samples and appends the output to `out`. `last` flushes the
  // filter's delay line; push nothing after it.
  void push(const float* in, size_t n, bool last, std::vector<float>& out);

 private:
  void* state_ = nullptr;  // SRC_STATE
  double ratio_ = 1.0;
  bool done_ = false;
};

// The whole signal at once; returns `in` unchanged (copied) when the rates are equal.
// The output has about in.size() * to_rate / from_rate samples.
std::vector<float> resample(std::span<const float> in, int from_rate, int to_rate);

}  // namespace mot::audio
