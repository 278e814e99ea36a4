#include "mot/data/tokenize/unit_codebook.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <numeric>

#include "mot/data/tokenize/kmeans.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/io/safetensors.hpp"

namespace mot::audio {
namespace {

constexpr int kMaxUnits = 1 << 20;
constexpr char kFormat[] = "mot-speech-units";
constexpr char kVersion[] = "1";
// A band whose features hardly vary (e.g. always at the log floor) would otherwise be
// blown up by 1/std; its deviations stay tiny with this floor (natural-log units).
constexpr double kMinStd = 1e-2;

// The feature-definition parts that are not MelConfig fields; load() insists on them.
const std::map<std::string, std::string>& fixed_metadata() {
  static const std::map<std::string, std::string> m = {
      {"mel_scale", "htk"}, {"window", "hann-periodic"}, {"spectrum", "magnitude"}, {"log", "ln"}};
  return m;
}

std::string float_text(float v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact round trip
  return std::string(buf, ec == std::errc() ? end : buf);
}

const std::string& meta_text(const std::map<std::string, std::string>& meta, const std::string& key,
                             const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) fail(path, ": not a mot speech unit codebook (metadata has no '", key, "')");
  return it->second;
}

template <class T>
T parse_meta(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path) {
  const std::string& s = meta_text(meta, key, path);
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    fail(path, ": metadata '", key, "' = '", s, "' is not a valid number");
  return v;
}

void check_ids(const uint32_t* ids, size_t n, int units) {
  for (size_t i = 0; i < n; ++i)
    if (ids[i] >= static_cast<uint32_t>(units))
      fail("speech units: unit ", ids[i], " at position ", i, " is out of range for a codebook of ", units, " units");
}

}  // namespace

void UnitCodebook::validate(const std::string& origin) const {
  mel.validate(origin);
  if (units < 1 || units > kMaxUnits) fail(origin, ": unit count ", units, " is not in [1, ", kMaxUnits, "]");
  const size_t M = static_cast<size_t>(mel.n_mels);
  if (mean.size() != M || stddev.size() != M || centroids.size() != static_cast<size_t>(units) * M)
    fail(origin, ": codebook arrays hold ", mean.size(), "/", stddev.size(), "/", centroids.size(),
         " values, expected n_mels=", M, " / ", M, " / units*n_mels=", static_cast<size_t>(units) * M);
  for (size_t j = 0; j < M; ++j)
    if (!std::isfinite(mean[j]) || !std::isfinite(stddev[j]) || !(stddev[j] > 0))
      fail(origin, ": band ", j, " normalisation (mean ", mean[j], ", std ", stddev[j], ") is invalid");
  for (size_t i = 0; i < centroids.size(); ++i)
    if (!std::isfinite(centroids[i])) fail(origin, ": centroid ", i / M, " has a non-finite value");
}

UnitCodebook UnitCodebook::train(const float* log_mel, size_t n_frames, const MelConfig& mel,
                                 const UnitTrainOptions& opt, const std::function<void(int, int, double)>& progress) {
  mel.validate("speech units train");
  if (opt.units < 1 || opt.units > kMaxUnits)
    fail("speech units train: units=", opt.units, " is not in [1, ", kMaxUnits, "]");
  const int M = mel.n_mels;
  // Seeded subsample of frames (kept in input order), or all of them.
  std::vector<size_t> rows;
  if (opt.max_frames > 0 && opt.max_frames < n_frames) {
    Rng rng(opt.seed ^ 0x5eed5eed5eed5eedull);
    rows.resize(n_frames);
    std::iota(rows.begin(), rows.end(), size_t{0});
    for (size_t i = 0; i < opt.max_frames; ++i) std::swap(rows[i], rows[i + rng.below(n_frames - i)]);
    rows.resize(opt.max_frames);
    std::sort(rows.begin(), rows.end());
  }
  const size_t N = rows.empty() ? n_frames : rows.size();
  if (N < static_cast<size_t>(opt.units))
    fail("speech units train: ", N, " frames are fewer than the ", opt.units, " units asked for");
  auto row = [&](size_t i) { return log_mel + (rows.empty() ? i : rows[i]) * M; };

  UnitCodebook cb;
  cb.mel = mel;
  cb.units = opt.units;
  std::vector<double> s1(M, 0.0), s2(M, 0.0);
  for (size_t i = 0; i < N; ++i) {
    const float* x = row(i);
    for (int j = 0; j < M; ++j) {
      if (!std::isfinite(x[j])) fail("speech units train: frame ", i, " band ", j, " is not a finite number");
      s1[j] += x[j];
    }
  }
  cb.mean.resize(M);
  for (int j = 0; j < M; ++j) cb.mean[j] = static_cast<float>(s1[j] / static_cast<double>(N));
  for (size_t i = 0; i < N; ++i)  // two passes: no cancellation in the variance
    for (int j = 0; j < M; ++j) {
      const double d = row(i)[j] - static_cast<double>(cb.mean[j]);
      s2[j] += d * d;
    }
  cb.stddev.resize(M);
  for (int j = 0; j < M; ++j)
    cb.stddev[j] = static_cast<float>(std::max(std::sqrt(s2[j] / static_cast<double>(N)), kMinStd));

  std::vector<float> Z(N * M);
  for (size_t i = 0; i < N; ++i)
    for (int j = 0; j < M; ++j) Z[i * M + j] = (row(i)[j] - cb.mean[j]) / cb.stddev[j];
  data::KMeansOptions ko;
  ko.k = opt.units;
  ko.seed = opt.seed;
  ko.max_iters = opt.iters;
  data::KMeans km = data::kmeans(Z.data(), N, M, ko, progress);
  cb.centroids = std::move(km.centroids);
  return cb;
}

std::vector<uint32_t> UnitCodebook::encode(const float* log_mel, size_t n_frames) const {
  const size_t M = static_cast<size_t>(mel.n_mels);
  if (units < 1 || mean.size() != M || stddev.size() != M || centroids.size() != static_cast<size_t>(units) * M)
    fail("speech units encode: codebook is not initialised");
  std::vector<float> Z(n_frames * M);
  for (size_t i = 0; i < n_frames; ++i)
    for (size_t j = 0; j < M; ++j) {
      const float x = log_mel[i * M + j];
      if (!std::isfinite(x)) fail("speech units encode: frame ", i, " band ", j, " is not a finite number");
      Z[i * M + j] = (x - mean[j]) / stddev[j];
    }
  std::vector<uint32_t> ids(n_frames);
  data::nearest_centroids(centroids.data(), units, mel.n_mels, Z.data(), n_frames, ids.data());
  return ids;
}

std::vector<float> UnitCodebook::decode_mel(const uint32_t* ids, size_t n) const {
  const size_t M = static_cast<size_t>(mel.n_mels);
  if (units < 1 || centroids.size() != static_cast<size_t>(units) * M || mean.size() != M || stddev.size() != M)
    fail("speech units decode: codebook is not initialised");
  check_ids(ids, n, units);
  std::vector<float> out(n * M);
  for (size_t i = 0; i < n; ++i) {
    const float* c = centroids.data() + static_cast<size_t>(ids[i]) * M;
    for (size_t j = 0; j < M; ++j) out[i * M + j] = c[j] * stddev[j] + mean[j];
  }
  return out;
}

void UnitCodebook::save(const std::string& path) const {
  validate(path);
  const int64_t M = mel.n_mels;
  std::map<std::string, std::string> meta = fixed_metadata();
  meta.insert({{"format", kFormat},
               {"version", kVersion},
               {"units", std::to_string(units)},
               {"sample_rate", std::to_string(mel.sample_rate)},
               {"n_fft", std::to_string(mel.n_fft)},
               {"win_length", std::to_string(mel.win_length)},
               {"hop_length", std::to_string(mel.hop_length)},
               {"n_mels", std::to_string(mel.n_mels)},
               {"f_min", float_text(mel.f_min)},
               {"f_max", float_text(mel.f_max)},
               {"log_floor", float_text(mel.log_floor)}});
  io::write_safetensors(path,
                        {{"centroids", io::DType::F32, {units, M}, centroids.data()},
                         {"mean", io::DType::F32, {M}, mean.data()},
                         {"std", io::DType::F32, {M}, stddev.data()}},
                        meta);
}

UnitCodebook UnitCodebook::load(const std::string& path) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const auto& meta = f.metadata();
  auto fmt = meta.find("format");
  if (fmt == meta.end() || fmt->second != kFormat)
    fail(path, ": not a mot speech unit codebook (metadata format is not '", kFormat, "')");
  if (meta_text(meta, "version", path) != kVersion)
    fail(path, ": speech unit codebook version '", meta.at("version"), "' is not supported (expected ", kVersion, ")");
  for (const auto& [key, want] : fixed_metadata())
    if (meta_text(meta, key, path) != want)
      fail(path, ": speech unit codebook has ", key, "='", meta.at(key), "', this build computes '", want, "'");
  UnitCodebook cb;
  cb.units = parse_meta<int>(meta, "units", path);
  cb.mel.sample_rate = parse_meta<int>(meta, "sample_rate", path);
  cb.mel.n_fft = parse_meta<int>(meta, "n_fft", path);
  cb.mel.win_length = parse_meta<int>(meta, "win_length", path);
  cb.mel.hop_length = parse_meta<int>(meta, "hop_length", path);
  cb.mel.n_mels = parse_meta<int>(meta, "n_mels", path);
  cb.mel.f_min = parse_meta<float>(meta, "f_min", path);
  cb.mel.f_max = parse_meta<float>(meta, "f_max", path);
  cb.mel.log_floor = parse_meta<float>(meta, "log_floor", path);
  cb.mel.validate(path);
  if (cb.units < 1 || cb.units > kMaxUnits) fail(path, ": unit count ", cb.units, " is not in [1, ", kMaxUnits, "]");
  const int64_t M = cb.mel.n_mels;
  auto read = [&](const char* name, std::vector<int64_t> shape, std::vector<float>& dst) {
    const io::TensorInfo* t = f.find(name);
    if (!t) fail(path, ": no '", name, "' tensor");
    if (t->dtype != io::DType::F32) fail(path, ": '", name, "' has dtype ", t->dtype_name, ", expected F32");
    if (t->shape != shape) fail(path, ": '", name, "' shape does not match units=", cb.units, ", n_mels=", M);
    dst.resize(static_cast<size_t>(t->numel()));
    f.read_f32(*t, dst.data());
  };
  read("centroids", {cb.units, M}, cb.centroids);
  read("mean", {M}, cb.mean);
  read("std", {M}, cb.stddev);
  cb.validate(path);
  return cb;
}

std::vector<uint32_t> audio_to_units(const UnitCodebook& cb, MelSpectrogram& mel, std::span<const float> samples) {
  if (!(mel.config() == cb.mel)) fail("speech units: the mel extractor's config differs from the codebook's");
  const std::vector<float> lm = mel.log_mel(samples);
  return cb.encode(lm.data(), mel.frames(samples.size()));
}

std::vector<uint32_t> audio_to_units(const UnitCodebook& cb, std::span<const float> samples) {
  MelSpectrogram mel(cb.mel);
  return audio_to_units(cb, mel, samples);
}

std::vector<float> units_to_audio(const UnitCodebook& cb, const uint32_t* ids, size_t n, const GriffinLimConfig& gl) {
  const std::vector<float> lm = cb.decode_mel(ids, n);
  return log_mel_to_audio(lm.data(), n, cb.mel, gl);
}

}  // namespace mot::audio
