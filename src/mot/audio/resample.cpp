#include "mot/audio/resample.hpp"

#include <samplerate.h>

#include <algorithm>

#include "mot/core/error.hpp"

namespace mot::audio {
namespace {

constexpr int kMaxRate = 1000000;
constexpr size_t kOutChunk = 8192;  // output frames per src_process call

}  // namespace

Resampler::Resampler(int from_rate, int to_rate) {
  if (from_rate < 1 || from_rate > kMaxRate || to_rate < 1 || to_rate > kMaxRate)
    fail("resample: sample rates ", from_rate, " -> ", to_rate, " Hz are not in [1, ", kMaxRate, "]");
  ratio_ = static_cast<double>(to_rate) / from_rate;
  if (!src_is_valid_ratio(ratio_))
    fail("resample: ratio ", to_rate, "/", from_rate, " is outside libsamplerate's range [1/256, 256]");
  int err = 0;
  state_ = src_new(SRC_SINC_MEDIUM_QUALITY, 1, &err);
  if (!state_) fail("resample: libsamplerate: ", src_strerror(err));
}

Resampler::~Resampler() { src_delete(static_cast<SRC_STATE*>(state_)); }

void Resampler::push(const float* in, size_t n, bool last, std::vector<float>& out) {
  if (done_) fail("resample: input pushed after the last chunk");
  done_ = last;
  SRC_DATA d{};
  d.src_ratio = ratio_;
  d.end_of_input = last ? 1 : 0;
  // Feed the input in slices and grow `out` chunk by chunk; with end_of_input the
  // converter keeps producing (the filter tail) until it returns nothing.
  while (true) {
    const size_t at = out.size();
    out.resize(at + kOutChunk);
    d.data_in = in;
    d.input_frames = static_cast<long>(std::min<size_t>(n, 1u << 20));
    d.data_out = out.data() + at;
    d.output_frames = static_cast<long>(kOutChunk);
    const int err = src_process(static_cast<SRC_STATE*>(state_), &d);
    if (err) {
      out.resize(at);
      fail("resample: libsamplerate: ", src_strerror(err));
    }
    out.resize(at + static_cast<size_t>(d.output_frames_gen));
    in += d.input_frames_used;
    n -= static_cast<size_t>(d.input_frames_used);
    if (n == 0 && d.output_frames_gen == 0) break;  // all input consumed and drained
  }
}

std::vector<float> resample(std::span<const float> in, int from_rate, int to_rate) {
  if (from_rate == to_rate && from_rate >= 1) return {in.begin(), in.end()};
  Resampler r(from_rate, to_rate);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(static_cast<double>(in.size()) * to_rate / from_rate) + 64);
  r.push(in.data(), in.size(), true, out);
  return out;
}

}  // namespace mot::audio
