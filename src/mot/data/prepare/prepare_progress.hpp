// A progress line on stderr for `mot data prepare`: files done/total, MB/s and ETA.
// On a terminal it redraws one line (at most 10 times a second); into a log file or a
// pipe it prints a full line only every few seconds, so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace mot::data {

class Progress {
 public:
  // `what` names the stage ("encoding"); totals may be 0 when unknown.
  Progress(std::string what, uint64_t total_files, uint64_t total_bytes, bool quiet);
  void advance(uint64_t files, uint64_t bytes);  // adds to the counts; prints when due
  void finish();                                 // prints the final state once

 private:
  void print(bool final);
  std::string what_;
  uint64_t total_files_, total_bytes_, files_ = 0, bytes_ = 0;
  bool quiet_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace mot::data
