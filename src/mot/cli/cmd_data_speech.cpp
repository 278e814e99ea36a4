// `mot data show` for speech spans: the unit ids, run-length compacted (25 Hz units
// repeat while a sound lasts), and with --wav DIR each span decoded to a WAV with the
// corpus's unit codebook (mean log-mel per unit, Griffin-Lim) so people can listen.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "mot/audio/audio_io.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"
#include "mot/core/error.hpp"

namespace mot::cli {

void show_speech(const std::string& dir, const std::string& split, int64_t doc,
                 const std::vector<std::vector<uint32_t>>& spans, const std::string& wav_dir) {
  for (size_t i = 0; i < spans.size(); ++i) {
    const auto& u = spans[i];
    std::string line;
    for (size_t a = 0; a < u.size();) {
      size_t b = a;
      while (b < u.size() && u[b] == u[a]) ++b;
      if (a) line += ' ';
      line += std::to_string(u[a]);
      if (b - a > 1) {
        line += 'x';
        line += std::to_string(b - a);
      }
      a = b;
    }
    std::printf("speech %zu: %zu units (%.2f s): %s\n", i + 1, u.size(), u.size() / 25.0, line.c_str());
  }
  if (spans.empty() || wav_dir.empty()) return;
  const audio::UnitCodebook cb = audio::UnitCodebook::load(dir + "/speech.safetensors");
  std::error_code ec;
  std::filesystem::create_directories(wav_dir, ec);
  if (ec) fail(wav_dir, ": cannot create directory: ", ec.message());
  for (size_t i = 0; i < spans.size(); ++i) {
    const std::string path = cat(wav_dir, "/", split, "-", doc, "-speech", i + 1, ".wav");
    const std::vector<float> pcm = audio::units_to_audio(cb, spans[i].data(), spans[i].size());
    audio::write_wav(path, pcm, cb.mel.sample_rate);
    std::printf("wrote %s (%zu samples)\n", path.c_str(), pcm.size());
  }
}

}  // namespace mot::cli
