// libFuzzer target: audio files are outside input (`mot data prepare` reads whatever
// WAV/FLAC/OGG a user's folder holds). read_audio must turn hostile bytes into
// mot::Error only, and what it accepts must be finite 16 kHz mono samples.
// libsndfile opens paths, so each input goes through a file in /dev/shm (or /tmp).
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "mot/audio/audio_io.hpp"
#include "mot/core/error.hpp"

namespace {
std::string scratch_path() {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/mot-fuzz-audio-" + std::to_string(getpid());
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const auto samples = mot::audio::read_audio(path, 30.0);  // 30 s cap keeps runs fast
    if (samples.empty()) __builtin_trap();                    // empty audio must be an error
    for (float x : samples)
      if (!std::isfinite(x)) __builtin_trap();
  } catch (const mot::Error&) {
  }
  return 0;
}
