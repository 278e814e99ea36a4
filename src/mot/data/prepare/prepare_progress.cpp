#include "mot/data/prepare/prepare_progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace mot::data {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kTtyInterval = 0.1;  // seconds between redraws on a terminal
constexpr double kLogInterval = 5.0;  // seconds between lines in a log

std::string clock_text(double s) {
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

}  // namespace

Progress::Progress(std::string what, uint64_t total_files, uint64_t total_bytes, bool quiet)
    : what_(std::move(what)), total_files_(total_files), total_bytes_(total_bytes), quiet_(quiet),
      tty_(isatty(2) != 0), start_(Clock::now()), last_(start_) {}

void Progress::advance(uint64_t files, uint64_t bytes) {
  files_ += files;
  bytes_ += bytes;
  if (quiet_) return;
  const auto now = Clock::now();
  if (std::chrono::duration<double>(now - last_).count() < (tty_ ? kTtyInterval : kLogInterval)) return;
  last_ = now;
  print(false);
}

void Progress::finish() {
  if (quiet_ || finished_) return;
  finished_ = true;
  print(true);
}

void Progress::print(bool final) {
  const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  const double mb = static_cast<double>(bytes_) / 1e6;
  // (snprintf rather than std::string operator+: GCC 12 warns falsely on the latter here.)
  char buf[160];
  if (total_files_)
    std::snprintf(buf, sizeof buf, "prepare: %s %llu/%llu files, %.1f MB, %.1f MB/s", what_.c_str(),
                  static_cast<unsigned long long>(files_), static_cast<unsigned long long>(total_files_), mb,
                  secs > 0 ? mb / secs : 0.0);
  else
    std::snprintf(buf, sizeof buf, "prepare: %s %llu files, %.1f MB, %.1f MB/s", what_.c_str(),
                  static_cast<unsigned long long>(files_), mb, secs > 0 ? mb / secs : 0.0);
  std::string line = buf;
  if (total_bytes_ == 0 && bytes_ == 0) line.erase(line.find(", 0.0 MB"));  // a stage that counts files only
  if (final) {
    line += ", " + clock_text(secs);
  } else if (total_bytes_ && bytes_ > 0 && bytes_ <= total_bytes_) {
    // ETA from the byte rate: images and text differ in cost per file, not per byte.
    line += ", ETA " + clock_text(secs * static_cast<double>(total_bytes_ - bytes_) / static_cast<double>(bytes_));
  }
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace mot::data
