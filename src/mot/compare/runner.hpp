// Runs several `mot train` jobs as child processes, a few at a time, with one
// progress line every few seconds. Finished runs are skipped and unfinished ones
// resumed, so an interrupted comparison continues where it stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mot::compare {

struct TrainJob {
  std::string label;                // "seed 1 dense"
  std::string run_dir;              // --out
  std::vector<std::string> args;    // train arguments except --out / --resume
  int64_t steps = 0;                // total steps the run must reach
};

// True if run_dir holds a finished run of `steps` steps.
bool run_finished(const std::string& run_dir, int64_t steps);

// Runs all jobs, `parallel` at a time; the child's output goes to run_dir/train.log.
// Throws mot::Error naming the job and its log if one fails. Returns false if SIGINT
// or SIGTERM arrived: the running jobs were asked to save and stop (a later call
// resumes them), no orphan keeps writing into a run another call could start again.
bool run_train_jobs(const std::vector<TrainJob>& jobs, int parallel);

}  // namespace mot::compare
