// Speech units (src/mot/data/tokenize/kmeans.hpp, unit_codebook.hpp, griffin_lim.hpp,
// reconstruction.hpp): k-means recovers separable clusters and is deterministic (also
// across thread counts), units encode -> decode -> encode is the identity, the
// reconstruction measure stays below stated bounds on a synthetic voiced signal,
// Griffin-Lim keeps a harmonic signal's fundamental, and codebook save/load.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "mot/audio/griffin_lim.hpp"
#include "mot/data/tokenize/kmeans.hpp"
#include "mot/audio/mel.hpp"
#include "mot/audio/reconstruction.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/io/safetensors.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using mot::data::KMeansOptions;
using mot::audio::MelSpectrogram;
using mot::audio::UnitCodebook;
using mot::audio::UnitTrainOptions;

namespace {

constexpr double kPi = std::numbers::pi;

class AudioUnits : public mot::test::TempDirTest {};

// n points around each of `centres` (k x dim, row-major) with Gaussian noise sigma;
// label[i] = the point's centre.
std::vector<float> clusters(const std::vector<float>& centres, int k, int dim, size_t per, double sigma, uint64_t seed,
                            std::vector<int>& label) {
  mot::Rng rng(seed);
  std::vector<float> X;
  label.clear();
  for (size_t i = 0; i < per; ++i)  // interleaved so clusters are not contiguous
    for (int c = 0; c < k; ++c) {
      for (int j = 0; j < dim; ++j) X.push_back(static_cast<float>(centres[c * dim + j] + sigma * rng.normal()));
      label.push_back(c);
    }
  return X;
}

// A harmonic tone: harmonics 1..8 of f0 with amplitudes amp/h.
void add_harmonic(std::vector<float>& x, size_t from, size_t n, double f0, double amp) {
  for (size_t i = 0; i < n; ++i)
    for (int h = 1; h <= 8 && h * f0 < 7500; ++h)
      x[from + i] += static_cast<float>(amp / h * std::sin(2 * kPi * h * f0 * static_cast<double>(from + i) / 16000));
}

// A stand-in for speech: 200 ms segments of harmonic tones with one of six pitches,
// some silence, and a little noise (deterministic).
std::vector<float> voiced_signal(size_t segments, uint64_t seed) {
  const double pitches[] = {110, 150, 200, 260, 330, 0};
  mot::Rng rng(seed);
  std::vector<float> x(segments * 3200, 0.0f);
  for (size_t s = 0; s < segments; ++s) {
    const double f0 = pitches[rng.below(6)];
    if (f0 > 0) add_harmonic(x, s * 3200, 3200, f0, 0.3);
  }
  for (float& v : x) v += static_cast<float>(0.003 * rng.normal());
  return x;
}

// Lag in [lo, hi] with the largest normalised autocorrelation over x[a, b).
int autocorr_lag(const std::vector<float>& x, size_t a, size_t b, int lo, int hi) {
  int best = lo;
  double best_r = -2;
  for (int lag = lo; lag <= hi; ++lag) {
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = a; i + lag < b; ++i) {
      xy += static_cast<double>(x[i]) * x[i + lag];
      xx += static_cast<double>(x[i]) * x[i];
      yy += static_cast<double>(x[i + lag]) * x[i + lag];
    }
    const double r = xy / std::sqrt(xx * yy + 1e-30);
    if (r > best_r) best_r = r, best = lag;
  }
  return best;
}

double tone_power(const std::vector<float>& x, size_t a, size_t b, double hz) {
  const double w = 2 * kPi * hz / 16000, c = 2 * std::cos(w);
  double s1 = 0, s2 = 0;
  for (size_t i = a; i < b; ++i) {
    const double s0 = x[i] + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - c * s1 * s2) / (static_cast<double>(b - a) * (b - a));
}

UnitCodebook small_codebook(uint64_t seed = 1) {
  const std::vector<float> x = voiced_signal(20, 11);
  MelSpectrogram mel;
  const std::vector<float> lm = mel.log_mel(x);
  UnitTrainOptions opt;
  opt.units = 12;
  opt.seed = seed;
  return UnitCodebook::train(lm.data(), mel.frames(x.size()), mel.config(), opt);
}

}  // namespace

TEST(AudioUnitsDefaults, AreThePapersSetting) {
  const UnitTrainOptions opt;
  const mot::audio::MelConfig mel;
  EXPECT_EQ(opt.units, 500);  // 500-unit codebook
  EXPECT_EQ(mel.sample_rate, 16000);
  EXPECT_EQ(mel.sample_rate / mel.hop_length, 25);  // 25 Hz
  EXPECT_EQ(mel.n_mels, 80);
}

TEST(AudioKMeans, RecoversSeparableClustersWithFullPurity) {
  const int k = 6, dim = 10;
  mot::Rng rng(1);
  std::vector<float> centres(k * dim);
  for (float& v : centres) v = static_cast<float>(10.0 * rng.normal());  // pairwise distances >> noise
  std::vector<int> label;
  const std::vector<float> X = clusters(centres, k, dim, 150, 0.1, 2, label);
  KMeansOptions opt;
  opt.k = k;
  opt.seed = 42;
  const mot::data::KMeans km = mot::data::kmeans(X.data(), label.size(), dim, opt);
  EXPECT_TRUE(km.converged);
  EXPECT_NEAR(km.distortion, dim * 0.01, 0.02);  // the noise variance: nothing left but noise
  std::vector<uint32_t> ids(label.size());
  mot::data::nearest_centroids(km.centroids.data(), k, dim, X.data(), label.size(), ids.data());
  // Purity 100%: every true cluster maps to one unit, and distinct clusters to distinct units.
  std::vector<int> unit_of(k, -1);
  for (size_t i = 0; i < label.size(); ++i) {
    if (unit_of[label[i]] < 0) unit_of[label[i]] = static_cast<int>(ids[i]);
    EXPECT_EQ(static_cast<int>(ids[i]), unit_of[label[i]]) << "point " << i;
  }
  EXPECT_EQ(std::set<int>(unit_of.begin(), unit_of.end()).size(), static_cast<size_t>(k));
  // Each found centroid is its cluster's centre, up to the noise in a 150-point mean.
  for (int c = 0; c < k; ++c)
    for (int j = 0; j < dim; ++j)
      EXPECT_NEAR(km.centroids[unit_of[c] * dim + j], centres[c * dim + j], 0.05) << "cluster " << c;
}

TEST(AudioKMeans, IsDeterministicForASeedAndAnyThreadCount) {
  const int k = 40, dim = 16;
  mot::Rng rng(9);
  std::vector<float> centres(k * dim);
  for (float& v : centres) v = static_cast<float>(rng.normal());
  std::vector<int> label;
  const std::vector<float> X = clusters(centres, k, dim, 50, 0.5, 3, label);  // overlapping: many iterations
  KMeansOptions opt;
  opt.k = k;
  opt.seed = 5;
  opt.max_iters = 15;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const mot::data::KMeans a = mot::data::kmeans(X.data(), label.size(), dim, opt);
  omp_set_num_threads(2);
  const mot::data::KMeans b = mot::data::kmeans(X.data(), label.size(), dim, opt);
  omp_set_num_threads(threads);
  ASSERT_EQ(a.centroids.size(), b.centroids.size());
  EXPECT_EQ(std::memcmp(a.centroids.data(), b.centroids.data(), a.centroids.size() * sizeof(float)), 0);
  EXPECT_EQ(a.iters, b.iters);
  opt.seed = 6;
  const mot::data::KMeans c = mot::data::kmeans(X.data(), label.size(), dim, opt);
  EXPECT_NE(a.centroids, c.centroids);
}

TEST(AudioKMeans, BadInputsThrow) {
  std::vector<float> X(20, 1.0f);
  KMeansOptions opt;
  opt.k = 11;
  EXPECT_THROW(mot::data::kmeans(X.data(), 10, 2, opt), mot::Error);  // fewer points than k
  opt.k = 3;
  X[5] = NAN;
  EXPECT_THROW(mot::data::kmeans(X.data(), 10, 2, opt), mot::Error);
  X[5] = 1.0f;  // all points equal: still k centroids (duplicates), no crash
  EXPECT_EQ(mot::data::kmeans(X.data(), 10, 2, opt).centroids.size(), 6u);
}

TEST_F(AudioUnits, EncodeDecodeRoundTripAndReconstructionBounds) {
  const UnitCodebook cb = small_codebook();
  // Each unit's mean log-mel encodes back to that unit.
  std::vector<uint32_t> all(cb.units);
  for (int u = 0; u < cb.units; ++u) all[u] = static_cast<uint32_t>(u);
  const std::vector<float> means = cb.decode_mel(all.data(), all.size());
  EXPECT_EQ(cb.encode(means.data(), all.size()), all);

  // A different signal drawn from the same kind: 4 s = 100 units.
  const std::vector<float> x = voiced_signal(20, 12);
  const std::vector<uint32_t> ids = mot::audio::audio_to_units(cb, x);
  ASSERT_EQ(ids.size(), 100u);
  const std::vector<float> audio = mot::audio::units_to_audio(cb, ids.data(), ids.size());
  EXPECT_EQ(audio.size(), 100u * 640);
  const mot::audio::Reconstruction r = mot::audio::measure_reconstruction(cb, x);
  std::printf("[ measured ] units=%d frames=%zu quantisation %.2f dB, vocoder %.2f dB, total %.2f dB, "
              "spectral convergence %.3f, quantisation mse %.3f\n",
              cb.units, r.frames, r.quantisation_db, r.vocoder_db, r.total_db, r.spectral_convergence,
              r.quantisation_mse);
  EXPECT_EQ(r.frames, 100u);
  // Bounds with margin over what this build measures (4.3, 2.7, 5.8 dB, 0.39).
  EXPECT_LT(r.quantisation_db, 6.0);
  EXPECT_LT(r.vocoder_db, 4.0);
  EXPECT_LT(r.total_db, 8.0);
  EXPECT_LT(r.spectral_convergence, 0.5);
  // Out-of-range units are refused.
  const uint32_t bad = static_cast<uint32_t>(cb.units);
  EXPECT_THROW(cb.decode_mel(&bad, 1), mot::Error);
}

TEST(AudioGriffinLim, HarmonicSignalKeepsItsFundamental) {
  std::vector<float> x(16000, 0.0f);
  add_harmonic(x, 0, x.size(), 200.0, 0.3);
  MelSpectrogram mel;
  const std::vector<float> lm = mel.log_mel(x);
  const std::vector<float> y = mot::audio::log_mel_to_audio(lm.data(), mel.frames(x.size()), mel.config());
  ASSERT_EQ(y.size(), 16000u);
  EXPECT_EQ(autocorr_lag(x, 4000, 12000, 50, 150), 80);  // the test's measure on the input: 16000/200
  EXPECT_NEAR(autocorr_lag(y, 4000, 12000, 50, 150), 80, 1);
  // Energy at the harmonics, not between them.
  for (double h : {200.0, 400.0, 600.0})
    EXPECT_GT(tone_power(y, 4000, 12000, h), 10 * tone_power(y, 4000, 12000, h + 100)) << h;
  // Its log-mel comes back close to the input's (Griffin-Lim's own error).
  const std::vector<float> back = mel.log_mel(y);
  const double db = mot::audio::log_mel_distance_db(lm.data(), back.data(), 25, 80);
  std::printf("[ measured ] harmonic 200 Hz: log-mel distance after mel inversion + Griffin-Lim %.2f dB\n", db);
  EXPECT_LT(db, 7.0);  // measured 5.3 dB (the clamped pseudo-inverse instead of NNLS: 11.2 dB)
  // Deterministic for a seed.
  EXPECT_EQ(mot::audio::log_mel_to_audio(lm.data(), 25, mel.config()), y);
}

TEST_F(AudioUnits, UnitDecodingKeepsAFundamental) {
  std::vector<float> x(32000, 0.0f);
  add_harmonic(x, 0, x.size(), 200.0, 0.3);
  MelSpectrogram mel;
  const std::vector<float> lm = mel.log_mel(x);
  UnitTrainOptions opt;
  opt.units = 4;
  const UnitCodebook cb = UnitCodebook::train(lm.data(), mel.frames(x.size()), mel.config(), opt);
  const std::vector<uint32_t> ids = mot::audio::audio_to_units(cb, mel, x);
  const std::vector<float> y = mot::audio::units_to_audio(cb, ids.data(), ids.size());
  EXPECT_NEAR(autocorr_lag(y, 8000, 24000, 50, 150), 80, 1);
}

TEST_F(AudioUnits, TrainingIsDeterministicAndSaveLoadRoundTrips) {
  const UnitCodebook a = small_codebook(1), b = small_codebook(1);
  EXPECT_EQ(a.centroids, b.centroids);
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_EQ(a.stddev, b.stddev);
  a.save(path("units.safetensors"));
  const UnitCodebook c = UnitCodebook::load(path("units.safetensors"));
  EXPECT_EQ(c.mel, a.mel);
  EXPECT_EQ(c.units, a.units);
  EXPECT_EQ(c.centroids, a.centroids);
  EXPECT_EQ(c.mean, a.mean);
  EXPECT_EQ(c.stddev, a.stddev);
  const mot::io::SafetensorsFile f = mot::io::SafetensorsFile::open(path("units.safetensors"));
  EXPECT_EQ(f.metadata().at("format"), "mot-speech-units");
  EXPECT_EQ(f.metadata().at("hop_length"), "640");
  EXPECT_EQ(f.metadata().at("mel_scale"), "htk");

  // A non-default mel config survives too.
  UnitCodebook d = a;
  d.mel.f_min = 55.5f;
  d.save(path("d.safetensors"));
  EXPECT_EQ(UnitCodebook::load(path("d.safetensors")).mel, d.mel);
}

TEST_F(AudioUnits, BadCodebookFilesThrowNamingTheFile) {
  const UnitCodebook a = small_codebook();
  auto expect_error = [&](const std::string& p) {
    try {
      UnitCodebook::load(p);
      ADD_FAILURE() << "no mot::Error for " << p;
    } catch (const mot::Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  expect_error(path("missing.safetensors"));
  a.save(path("u.safetensors"));
  mot::test::Bytes bytes = mot::test::slurp(path("u.safetensors"));
  mot::test::Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() - 9));
  mot::test::spit(path("cut.safetensors"), cut);
  expect_error(path("cut.safetensors"));
  // Right container, wrong content: another format, a changed feature definition, a
  // centroid shape that does not match n_mels, a zero std.
  const int64_t M = a.mel.n_mels;
  std::map<std::string, std::string> meta = {{"format", "mot-vq"}};
  mot::io::write_safetensors(path("vq.safetensors"),
                             {{"centroids", mot::io::DType::F32, {a.units, M}, a.centroids.data()}}, meta);
  expect_error(path("vq.safetensors"));
  const mot::io::SafetensorsFile f = mot::io::SafetensorsFile::open(path("u.safetensors"));
  auto rewrite = [&](const std::string& name, std::map<std::string, std::string> m, std::vector<int64_t> cshape,
                     const std::vector<float>& stddev) {
    mot::io::write_safetensors(path(name),
                               {{"centroids", mot::io::DType::F32, cshape, a.centroids.data()},
                                {"mean", mot::io::DType::F32, {M}, a.mean.data()},
                                {"std", mot::io::DType::F32, {M}, stddev.data()}},
                               m);
  };
  auto m = f.metadata();
  m["mel_scale"] = "slaney";
  rewrite("slaney.safetensors", m, {a.units, M}, a.stddev);
  expect_error(path("slaney.safetensors"));
  m = f.metadata();
  m["n_mels"] = "40";
  rewrite("mels.safetensors", m, {a.units, M}, a.stddev);
  expect_error(path("mels.safetensors"));
  std::vector<float> zero_std = a.stddev;
  zero_std[3] = 0.0f;
  rewrite("std.safetensors", f.metadata(), {a.units, M}, zero_std);
  expect_error(path("std.safetensors"));
  rewrite("ok.safetensors", f.metadata(), {a.units, M}, a.stddev);  // the control
  EXPECT_NO_THROW(UnitCodebook::load(path("ok.safetensors")));
}
