// The comparison report: final validation losses per variant (mean and spread over
// seeds), the step-matching ratio of each variant against the dense baseline for
// every metric, wall-clock per step, and loss curves plotted with gnuplot.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "mot/compare/series.hpp"

namespace mot::compare {

struct MetricSpec {
  std::string key;    // metrics.jsonl key, e.g. "val/cap/loss/text"
  std::string label;  // "caption given image (text loss of image->caption documents)"
  bool panel = false; // gets a plot panel
};

struct Run {
  std::string variant;
  int seed = 0;
  std::map<std::string, Series> metrics;
};

struct ReportInput {
  std::string title;
  std::string out_dir;               // report.md, loss.png, curves/*.dat go here
  std::vector<std::string> variants; // the first is the baseline (dense)
  std::vector<int> seeds;
  std::vector<Run> runs;
  std::vector<MetricSpec> metrics;
  std::string setup;                 // markdown paragraph describing models and data
  std::string commands;              // how to reproduce
};

// Writes report.md and loss.png (via gnuplot); returns the markdown text.
// Throws mot::Error if gnuplot fails.
std::string write_report(const ReportInput& in);

}  // namespace mot::compare
