#include "mot/audio/audio_io.hpp"

#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include "mot/audio/resample.hpp"
#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::audio {
namespace {

constexpr int kMaxChannels = 1024;
constexpr double kMaxSeconds = 24 * 3600.0;  // a sanity cap: 24 h at 16 kHz is 5.5 GB of floats
constexpr sf_count_t kBlockFrames = 16384;   // frames per read

struct SndfileClose {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using Sndfile = std::unique_ptr<SNDFILE, SndfileClose>;

// An in-memory file for libsndfile's virtual I/O: the WAV is encoded into a buffer
// (libsndfile seeks back to patch the header sizes on close), then written out
// atomically in one piece.
struct MemFile {
  std::string bytes;
  sf_count_t pos = 0;
};

sf_count_t mem_len(void* user) { return static_cast<sf_count_t>(static_cast<MemFile*>(user)->bytes.size()); }

sf_count_t mem_seek(sf_count_t offset, int whence, void* user) {
  auto* m = static_cast<MemFile*>(user);
  sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : static_cast<sf_count_t>(m->bytes.size());
  const sf_count_t p = base + offset;
  if (p < 0) return -1;
  m->pos = p;
  return p;
}

sf_count_t mem_read(void* dst, sf_count_t count, void* user) {
  auto* m = static_cast<MemFile*>(user);
  const sf_count_t size = static_cast<sf_count_t>(m->bytes.size());
  const sf_count_t n = std::max<sf_count_t>(0, std::min(count, size - m->pos));
  if (n > 0) std::memcpy(dst, m->bytes.data() + m->pos, static_cast<size_t>(n));
  m->pos += n;
  return n;
}

sf_count_t mem_write(const void* src, sf_count_t count, void* user) {
  auto* m = static_cast<MemFile*>(user);
  const size_t end = static_cast<size_t>(m->pos + count);
  if (end > m->bytes.size()) m->bytes.resize(end);
  std::memcpy(m->bytes.data() + m->pos, src, static_cast<size_t>(count));
  m->pos += count;
  return count;
}

sf_count_t mem_tell(void* user) { return static_cast<MemFile*>(user)->pos; }

}  // namespace

std::vector<float> read_audio(const std::string& path, double max_seconds) {
  SF_INFO info{};
  Sndfile f(sf_open(path.c_str(), SFM_READ, &info));
  if (!f) fail(path, ": cannot read audio: ", sf_strerror(nullptr));
  if (info.channels < 1 || info.channels > kMaxChannels)
    fail(path, ": audio has ", info.channels, " channels (expected 1 to ", kMaxChannels, ")");
  if (info.samplerate < 1) fail(path, ": audio has an invalid sample rate ", info.samplerate);
  if (info.frames <= 0) fail(path, ": audio file holds no samples (zero length)");
  const double limit = max_seconds > 0 ? std::min(max_seconds, kMaxSeconds) : kMaxSeconds;
  // The header's frame count may be wrong for a damaged file; the limit is enforced on
  // what is actually read as well.
  const double max_frames = limit * info.samplerate;
  if (static_cast<double>(info.frames) > max_frames)
    fail(path, ": audio lasts ", static_cast<double>(info.frames) / info.samplerate, " s, more than the limit of ",
         limit, " s");

  const bool resampling = info.samplerate != kSampleRate;
  std::unique_ptr<Resampler> rs;
  if (resampling) rs = std::make_unique<Resampler>(info.samplerate, kSampleRate);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(static_cast<double>(info.frames) * kSampleRate / info.samplerate) + 64);
  std::vector<float> block(static_cast<size_t>(kBlockFrames) * info.channels), mono(kBlockFrames);
  sf_count_t total = 0;
  while (true) {
    const sf_count_t got = sf_readf_float(f.get(), block.data(), kBlockFrames);
    if (got < 0 || sf_error(f.get()) != SF_ERR_NO_ERROR) fail(path, ": audio decode error: ", sf_strerror(f.get()));
    total += got;
    if (static_cast<double>(total) > max_frames) fail(path, ": audio lasts more than the limit of ", limit, " s");
    const float inv = 1.0f / static_cast<float>(info.channels);
    for (sf_count_t i = 0; i < got; ++i) {
      float s = 0;
      const float* fr = block.data() + i * info.channels;
      for (int c = 0; c < info.channels; ++c) s += fr[c];
      s = info.channels == 1 ? s : s * inv;
      if (!std::isfinite(s)) fail(path, ": audio sample ", total - got + i, " is not a finite number");
      mono[static_cast<size_t>(i)] = s;
    }
    const bool last = got < kBlockFrames;
    if (resampling)
      rs->push(mono.data(), static_cast<size_t>(got), last, out);
    else
      out.insert(out.end(), mono.begin(), mono.begin() + got);
    if (last) break;
  }
  if (total == 0 || out.empty()) fail(path, ": audio file holds no samples (zero length)");
  return out;
}

void write_wav(const std::string& path, std::span<const float> samples, int sample_rate) {
  if (sample_rate < 1 || sample_rate > 1000000) fail(path, ": cannot write WAV at sample rate ", sample_rate);
  std::vector<int16_t> pcm(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const float x = samples[i];
    if (!std::isfinite(x)) fail(path, ": cannot write WAV: sample ", i, " is not a finite number");
    const float s = std::nearbyint(x * 32768.0f);
    pcm[i] = static_cast<int16_t>(std::clamp(s, -32768.0f, 32767.0f));
  }
  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  MemFile mem;
  SF_VIRTUAL_IO vio{mem_len, mem_seek, mem_read, mem_write, mem_tell};
  {
    Sndfile f(sf_open_virtual(&vio, SFM_WRITE, &info, &mem));
    if (!f) fail(path, ": cannot encode WAV: ", sf_strerror(nullptr));
    const sf_count_t n = static_cast<sf_count_t>(pcm.size());
    if (n > 0 && sf_writef_short(f.get(), pcm.data(), n) != n)
      fail(path, ": cannot encode WAV: ", sf_strerror(f.get()));
  }  // sf_close writes the final header sizes into `mem`
  io::write_file_atomic(path, mem.bytes);
}

}  // namespace mot::audio
