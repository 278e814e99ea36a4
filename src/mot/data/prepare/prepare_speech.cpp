#include "mot/data/prepare/prepare_speech.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <new>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "mot/audio/audio_io.hpp"
#include "mot/audio/mel.hpp"
#include "mot/core/error.hpp"
#include "mot/data/prepare/prepare.hpp"
#include "mot/data/prepare/prepare_progress.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"

namespace mot::data {
namespace {

constexpr size_t kDecodeBlock = 16;          // sample files decoded per parallel block
constexpr double kMaxFileSeconds = 4 * 3600;  // longer files are skipped: 4 h is 920 MB of samples per thread
constexpr size_t kHeldoutMeasured = 4;       // held-out files measured end to end
constexpr size_t kMeasureSamples = 10 * audio::kSampleRate;  // ... on their first 10 s (Griffin-Lim is slow)
constexpr size_t kCutWindow = 50;            // a cut moves at most 2 s (50 frames) to a quieter frame

// "PATH: reason" -> "reason": summary.json lists the file separately, by its input path.
std::string reason_of(const std::exception& e, const std::string& path) {
  std::string s = e.what();
  if (s.rfind(path + ": ", 0) == 0) s.erase(0, path.size() + 2);
  return s;
}

// The file's log-mel frames (T x n_mels), its samples kept in `pcm` if asked; the
// reason instead when it is unusable. Never throws (runs inside OpenMP loops).
std::string load_frames(const std::string& path, audio::MelSpectrogram& mel, std::vector<float>& lm,
                        std::vector<float>* pcm) {
  try {
    std::vector<float> x = audio::read_audio(path, kMaxFileSeconds);
    if (x.size() < static_cast<size_t>(mel.config().hop_length))
      return cat("audio shorter than one 40 ms unit (", x.size(), " samples at 16 kHz)");
    lm = mel.log_mel(x);
    if (pcm) *pcm = std::move(x);
    return {};
  } catch (const std::bad_alloc&) {
    return "out of memory while decoding";
  } catch (const std::exception& e) {
    return reason_of(e, path);
  }
}

// Utterance lengths for T frames with at most max_t per utterance (empty: one piece).
// Greedy from the start: the next cut aims at an even share of what is left, then
// moves (within kCutWindow, never past max_t, never so early that the rest needs more
// pieces) to the frame with the lowest summed log-mel, the quietest, where a pause
// between words most likely is (ties: the one nearest the aim). So a file gets
// exactly ceil(T / max_t) utterances of similar length.
std::vector<uint32_t> cut_utterances(const float* lm, size_t T, size_t M, size_t max_t) {
  if (T <= max_t) return {};
  const size_t w = std::max<size_t>(1, std::min(kCutWindow, max_t / 4));
  std::vector<uint32_t> lens;
  size_t s = 0;
  while (T - s > max_t) {
    const size_t left = T - s, n = (left + max_t - 1) / max_t;
    const size_t target = s + left / n;
    const size_t lo = std::max({s + 1, target > w ? target - w : 0, T - (n - 1) * max_t});  // <= target
    const size_t hi = std::min(target + w, s + max_t);
    size_t best = target;
    float quietest = std::numeric_limits<float>::infinity();
    auto dist = [&](size_t c) { return c > target ? c - target : target - c; };
    for (size_t c = lo; c <= hi; ++c) {
      float loud = 0;
      for (size_t m = 0; m < M; ++m) loud += lm[c * M + m];
      if (loud < quietest || (loud == quietest && dist(c) < dist(best))) quietest = loud, best = c;
    }
    lens.push_back(static_cast<uint32_t>(best - s));
    s = best;
  }
  lens.push_back(static_cast<uint32_t>(T - s));
  return lens;
}

}  // namespace

SpeechKind::SpeechKind(const PrepareOptions& o)
    : units_(o.speech_units), iters_(o.speech_iters), sample_frames_(static_cast<size_t>(o.speech_sample_frames)),
      max_frames_(static_cast<size_t>(o.speech_max_seconds * 25.0)), seed_(o.seed) {}

std::pair<int, int> SpeechKind::markers(const TextTokenizer& tok) const {
  if (tok.bos_speech_id() < 0) fail("the text tokenizer has no <bos_speech>/<eos_speech> symbols");
  return {tok.bos_speech_id(), tok.eos_speech_id()};
}

std::vector<std::pair<size_t, std::string>> SpeechKind::train(const std::vector<std::string>& paths, bool quiet) {
  const audio::MelConfig cfg;  // 16 kHz, 25 frames per second, 80 bands: as synth
  const size_t M = static_cast<size_t>(cfg.n_mels);
  // One file gives at most an eighth of the sample (evenly strided frames), so a few
  // long recordings do not make up the whole codebook.
  const size_t per_file = std::max<size_t>(1, sample_frames_ / 8);
  std::vector<float> sample;
  std::vector<std::pair<size_t, std::string>> failures;
  Progress progress("decoding sample audio", paths.size(), 0, quiet);
  for (size_t next = 0; next < paths.size() && sample.size() / M < sample_frames_; next += kDecodeBlock) {
    const size_t n = std::min(kDecodeBlock, paths.size() - next);
    std::vector<std::vector<float>> got(n);
    std::vector<std::string> err(n);
#pragma omp parallel
    {
      audio::MelSpectrogram mel(cfg);  // one FFT plan per thread
#pragma omp for schedule(dynamic)
      for (size_t i = 0; i < n; ++i) err[i] = load_frames(paths[next + i], mel, got[i], nullptr);
    }
    for (size_t i = 0; i < n; ++i) {  // in order: the sample does not depend on thread timing
      if (!err[i].empty()) {
        failures.emplace_back(next + i, err[i]);
        continue;
      }
      const size_t have = sample.size() / M;
      if (have >= sample_frames_) break;
      const size_t T = got[i].size() / M, take = std::min({T, per_file, sample_frames_ - have});
      for (size_t j = 0; j < take; ++j) {
        const size_t t = j * T / take;
        sample.insert(sample.end(), got[i].begin() + t * M, got[i].begin() + (t + 1) * M);
      }
      ++sampled_files_;
      progress.advance(1, 0);
    }
  }
  progress.finish();
  const size_t frames = sample.size() / M;
  if (frames == 0) return failures;  // every file broken: the kind drops out
  if (frames < static_cast<size_t>(units_))
    fail("the ", sampled_files_, " usable sample audio files give ", frames, " log-mel frames (",
         static_cast<double>(frames) / 25.0, " s), too few for ", units_,
         " speech units (lower --speech-units, or reuse tokenizers with --tokenizers)");
  audio::UnitTrainOptions uo;
  uo.units = units_;
  uo.seed = seed_;
  uo.iters = iters_;
  const bool tty = isatty(2);
  cb_ = audio::UnitCodebook::train(sample.data(), frames, cfg, uo, [&](int it, int n, double dist) {
    if (!quiet)
      std::fprintf(stderr, tty ? "\rprepare: speech k-means iteration %d/%d, distortion %.5f"
                               : "prepare: speech k-means iteration %d/%d, distortion %.5f\n",
                   it, n, dist);
  });
  if (!quiet && tty) std::fprintf(stderr, "\n");
  sampled_frames_ = frames;
  return failures;
}

void SpeechKind::load(const std::string& dir, const nlohmann::json& vocab) {
  cb_ = audio::UnitCodebook::load(dir + "/speech.safetensors");
  if (!vocab.contains("bos_speech_id") || !vocab.contains("eos_speech_id"))
    fail(dir, "/vocab.json: a speech modality but no bos_speech_id/eos_speech_id");
}

void SpeechKind::save(const std::string& dir) const { cb_.save(dir + "/speech.safetensors"); }

void SpeechKind::describe(nlohmann::json& vocab) const {
  // The keys synth writes (bos_speech_id/eos_speech_id come with the text ids, prepare_vocab.cpp).
  vocab["speech_units"] = cb_.units;
  vocab["speech_units_per_second"] = cb_.mel.sample_rate / cb_.mel.hop_length;
  vocab["speech_samples_per_unit"] = cb_.mel.hop_length;
}

void SpeechKind::set_heldout(const std::vector<std::string>& paths) {
  heldout_.clear();
  for (size_t i = 0; i < paths.size() && i < kHeldoutMeasured; ++i) heldout_.insert(paths[i]);
}

std::vector<Encoded> SpeechKind::encode(const std::vector<std::string>& paths) {
  const size_t n = paths.size(), M = static_cast<size_t>(cb_.mel.n_mels);
  std::vector<Encoded> out(n);
  std::vector<double> secs(n, 0.0);
  std::vector<int> measured(n, 0);
  std::vector<audio::Reconstruction> rec(n);
#pragma omp parallel
  {
    audio::MelSpectrogram mel(cb_.mel);
#pragma omp for schedule(dynamic)
    for (size_t i = 0; i < n; ++i) {
      const bool measure = heldout_.count(paths[i]) > 0;
      std::vector<float> lm, pcm;
      out[i].error = load_frames(paths[i], mel, lm, measure ? &pcm : nullptr);
      if (!out[i].error.empty()) continue;
      const size_t T = lm.size() / M;
      try {
        out[i].codes = cb_.encode(lm.data(), T);
        out[i].pieces = cut_utterances(lm.data(), T, M, max_frames_);
        secs[i] = static_cast<double>(T) / 25.0;
        if (measure) {
          pcm.resize(std::min(pcm.size(), kMeasureSamples));
          rec[i] = audio::measure_reconstruction(cb_, pcm);
          measured[i] = 1;
        }
      } catch (const std::exception& e) {
        out[i].codes.clear();
        out[i].pieces.clear();
        out[i].error = reason_of(e, paths[i]);
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {  // in input order: the sums are the same bytes every run
    if (!out[i].error.empty()) continue;
    seconds_ += secs[i];
    ++files_;
    utterances_ += out[i].pieces.empty() ? 1 : out[i].pieces.size();
    cut_files_ += !out[i].pieces.empty();
    if (measured[i]) measured_[paths[i]] = rec[i];
  }
  return out;
}

void SpeechKind::report(nlohmann::json& s) const {
  audio::Reconstruction m;
  for (const auto& [path, r] : measured_) {  // in path order
    m.frames += r.frames;
    m.quantisation_db += r.quantisation_db;
    m.vocoder_db += r.vocoder_db;
    m.total_db += r.total_db;
    m.spectral_convergence += r.spectral_convergence;
  }
  const double k = measured_.empty() ? 1.0 : static_cast<double>(measured_.size());
  s["units"] = cb_.units;
  s["files"] = files_;
  s["utterances"] = utterances_;
  s["cut_files"] = cut_files_;
  s["seconds"] = seconds_;
  s["max_utterance_seconds"] = static_cast<double>(max_frames_) / 25.0;
  s["codebook_files"] = sampled_files_;
  s["codebook_frames"] = sampled_frames_;
  s["reconstruction"] = {{"files", measured_.size()},
                         {"frames", m.frames},
                         {"quantisation_db", m.quantisation_db / k},
                         {"vocoder_db", m.vocoder_db / k},
                         {"total_db", m.total_db / k},
                         {"spectral_convergence", m.spectral_convergence / k}};
}

}  // namespace mot::data
