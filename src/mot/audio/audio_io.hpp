// Audio files in and out. Reading goes through libsndfile (Debian libsndfile1-dev:
// WAV, FLAC, Ogg/Vorbis, AIFF, ...) and always yields what the speech tokenizer works
// on: mono float samples at 16 kHz (channels averaged, other rates resampled with
// libsamplerate). Writing produces 16-bit PCM mono WAV, atomically.
#pragma once
#include <span>
#include <string>
#include <vector>

namespace mot::audio {

inline constexpr int kSampleRate = 16000;  // the tokenizer's rate (25 Hz units = 640 samples)

// Decodes the whole file, block by block (the input is never held in full: blocks are
// mixed to mono and resampled as they are read). Samples are in [-1, 1] for integer
// formats (libsndfile divides 16-bit PCM by 32768). Throws mot::Error naming `path`
// when the file is missing, not a format libsndfile reads, corrupt, holds no samples
// (zero-length), holds non-finite samples, or lasts longer than max_seconds (0 = no
// limit besides 24 hours): callers that ingest folders catch it, skip and count.
std::vector<float> read_audio(const std::string& path, double max_seconds = 0);

// Writes `samples` as a mono 16-bit PCM WAV at sample_rate (temp file, fsync, rename;
// see io/atomic_file.hpp). Samples are scaled by 32768, rounded to nearest and clipped
// to [-32768, 32767], so read_audio() of the result gives back round(x*32768)/32768:
// within 2^-16 of x for x in [-1, 1 - 2^-15]. An empty signal gives a valid WAV with
// no samples. Non-finite samples or a bad rate throw mot::Error naming `path`.
void write_wav(const std::string& path, std::span<const float> samples, int sample_rate = kSampleRate);

}  // namespace mot::audio
