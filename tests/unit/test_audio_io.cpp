// Speech tokenizer audio I/O (src/mot/audio/audio_io.hpp, resample.hpp): 16-bit WAV
// write -> read round trip, other rates and stereo come back as 16 kHz mono with the
// same pitch and loudness, and empty, corrupt or missing files throw mot::Error naming
// the file.
#include <gtest/gtest.h>
#include <sndfile.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numbers>
#include <string>
#include <vector>

#include "mot/audio/audio_io.hpp"
#include "mot/audio/resample.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using mot::audio::read_audio;
using mot::audio::write_wav;

namespace {

constexpr double kPi = std::numbers::pi;

class AudioIo : public mot::test::TempDirTest {};

std::vector<float> sine(double hz, double amp, size_t n, int rate) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(amp * std::sin(2 * kPi * hz * i / rate));
  return x;
}

// Power of x at frequency hz (Goertzel), normalised so a full-length sine of amplitude
// a gives about a^2/4.
double tone_power(const float* x, size_t n, double hz, int rate) {
  const double w = 2 * kPi * hz / rate, c = 2 * std::cos(w);
  double s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; ++i) {
    const double s0 = x[i] + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const double p = s1 * s1 + s2 * s2 - c * s1 * s2;
  return p / (static_cast<double>(n) * n);
}

// Frequency (1 Hz steps in [lo, hi]) with the most power.
double peak_frequency(const std::vector<float>& x, double lo, double hi, int rate) {
  double best = lo, best_p = -1;
  for (double f = lo; f <= hi; f += 1.0) {
    const double p = tone_power(x.data(), x.size(), f, rate);
    if (p > best_p) best_p = p, best = f;
  }
  return best;
}

double rms(const float* x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s / static_cast<double>(n));
}

// A PCM-16 WAV at any rate and channel count, written with libsndfile directly.
void write_test_wav(const std::string& path, const std::vector<float>& interleaved, int rate, int channels) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
  const sf_count_t frames = static_cast<sf_count_t>(interleaved.size() / channels);
  ASSERT_EQ(sf_writef_float(f, interleaved.data(), frames), frames);
  sf_close(f);
}

template <class F>
void expect_error_naming(const std::string& path, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no mot::Error for " << path;
  } catch (const mot::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace

TEST_F(AudioIo, WavRoundTripIsExactOn16BitValuesAndWithinHalfAStepOtherwise) {
  mot::Rng rng(3);
  std::vector<float> q(4000), x(4000);
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = static_cast<float>(static_cast<int>(rng.below(65536)) - 32768) / 32768.0f;  // exactly 16-bit values
    x[i] = static_cast<float>(rng.uniform() * 1.8 - 0.9);
  }
  write_wav(path("q.wav"), q);
  EXPECT_EQ(read_audio(path("q.wav")), q);
  write_wav(path("x.wav"), x);
  const std::vector<float> y = read_audio(path("x.wav"));
  ASSERT_EQ(y.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::fabs(y[i] - x[i]), 0.5f / 32768 + 1e-7f) << i;
  // A standard 44-byte header + 2 bytes per sample, and no temporary file left behind.
  EXPECT_EQ(fs::file_size(path("x.wav")), 44u + 2 * x.size());
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(dir_)) entries += e.is_regular_file();
  EXPECT_EQ(entries, 2u);
  // Out-of-range samples are clipped, not wrapped.
  write_wav(path("clip.wav"), std::vector<float>{2.0f, -2.0f});
  EXPECT_EQ(read_audio(path("clip.wav")), (std::vector<float>{32767.0f / 32768, -1.0f}));
}

TEST_F(AudioIo, OtherRatesAreResampledTo16kHzKeepingPitchAndLoudness) {
  for (int rate : {8000, 44100, 22050}) {
    const std::string p = path("r" + std::to_string(rate) + ".wav");
    const std::vector<float> x = sine(1000.0, 0.5, static_cast<size_t>(rate), rate);  // one second
    write_test_wav(p, x, rate, 1);
    const std::vector<float> y = read_audio(p);
    EXPECT_NEAR(static_cast<double>(y.size()), 16000.0, 2.0) << rate;
    EXPECT_NEAR(peak_frequency(y, 900, 1100, 16000), 1000.0, 1.0) << rate;
    EXPECT_NEAR(rms(y.data() + 2000, 12000), 0.5 / std::sqrt(2.0), 0.01) << rate;
  }
  // The in-memory path gives the same as the file path.
  const std::vector<float> x = sine(440.0, 0.5, 22050, 22050);
  const std::vector<float> y = mot::audio::resample(x, 22050, 16000);
  EXPECT_NEAR(static_cast<double>(y.size()), 16000.0, 2.0);
  EXPECT_NEAR(peak_frequency(y, 400, 480, 16000), 440.0, 1.0);
  EXPECT_EQ(mot::audio::resample(x, 16000, 16000), x);
  EXPECT_THROW(mot::audio::resample(x, 0, 16000), mot::Error);
}

TEST_F(AudioIo, StereoIsMixedToMono) {
  // Left: a 500 Hz sine; right: silence. Mono is their mean: half the amplitude.
  const std::vector<float> l = sine(500.0, 0.8, 16000, 16000);
  std::vector<float> lr(2 * l.size(), 0.0f);
  for (size_t i = 0; i < l.size(); ++i) lr[2 * i] = l[i];
  write_test_wav(path("stereo.wav"), lr, 16000, 2);
  const std::vector<float> y = read_audio(path("stereo.wav"));
  ASSERT_EQ(y.size(), l.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], l[i] / 2, 1.0 / 32768) << i;
}

TEST_F(AudioIo, FlacIsReadToo) {
  const std::vector<float> x = sine(700.0, 0.4, 12000, 16000);
  SF_INFO info{};
  info.samplerate = 16000;
  info.channels = 1;
  info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path("a.flac").c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
  ASSERT_EQ(sf_writef_float(f, x.data(), static_cast<sf_count_t>(x.size())), static_cast<sf_count_t>(x.size()));
  sf_close(f);
  const std::vector<float> y = read_audio(path("a.flac"));
  ASSERT_EQ(y.size(), x.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], x[i], 1.0 / 32768) << i;
}

TEST_F(AudioIo, EmptyCorruptAndMissingFilesThrowNamingTheFile) {
  mot::test::spit(path("zero-bytes.wav"), {});
  expect_error_naming(path("zero-bytes.wav"), [&] { read_audio(path("zero-bytes.wav")); });
  write_wav(path("no-samples.wav"), std::vector<float>{});  // a valid header, zero length
  expect_error_naming(path("no-samples.wav"), [&] { read_audio(path("no-samples.wav")); });
  mot::Rng rng(5);
  mot::test::Bytes junk(3000);
  for (auto& b : junk) b = static_cast<uint8_t>(rng.below(256));
  mot::test::spit(path("junk.wav"), junk);
  expect_error_naming(path("junk.wav"), [&] { read_audio(path("junk.wav")); });
  write_wav(path("ok.wav"), sine(300.0, 0.5, 1000, 16000));
  mot::test::Bytes head = mot::test::slurp(path("ok.wav"));
  head.resize(30);  // cut inside the header
  mot::test::spit(path("cut.wav"), head);
  expect_error_naming(path("cut.wav"), [&] { read_audio(path("cut.wav")); });
  expect_error_naming(path("missing.wav"), [&] { read_audio(path("missing.wav")); });
  // Too long for the caller's limit.
  write_wav(path("long.wav"), std::vector<float>(32000, 0.1f));
  expect_error_naming(path("long.wav"), [&] { read_audio(path("long.wav"), 1.5); });
  EXPECT_EQ(read_audio(path("long.wav"), 2.0).size(), 32000u);
  // Writing non-finite samples fails and leaves nothing behind.
  expect_error_naming(path("nan.wav"), [&] { write_wav(path("nan.wav"), std::vector<float>{0.0f, NAN}); });
  EXPECT_FALSE(fs::exists(path("nan.wav")));
}
