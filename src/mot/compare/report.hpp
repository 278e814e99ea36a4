// The comparison report: the variants and their sizes, final validation losses per
// variant (mean and spread over seeds), and for every non-baseline variant and
// validation loss the paper's matching ratios against the dense baseline, measured in
// training steps, training FLOPs and wall-clock seconds; loss curves against each of
// the three are plotted with gnuplot.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mot/compare/series.hpp"

namespace mot::compare {

struct MetricSpec {
  std::string key;    // metrics.jsonl key, e.g. "val/cap/loss/text"
  std::string label;  // "caption given image (captioning)"
  bool panel = false; // gets a plot panel
};

struct Run {
  std::string variant;
  int seed = 0;
  std::map<std::string, Series> metrics;
};

struct VariantInfo {
  std::string name, description;
  int64_t params_total = 0, params_active = 0;
  double train_flops_per_token = 0;  // `mot info`'s accounting (router and attention included)
};

struct ReportInput {
  std::string title;
  std::string out_dir;               // report.md, the PNGs and curves/*.dat go here
  std::vector<VariantInfo> variants; // the first is the baseline (dense)
  std::vector<int> seeds;
  std::vector<Run> runs;             // one per variant and seed
  std::vector<MetricSpec> metrics;   // present in every run
  std::string setup;                 // markdown describing models, data and schedule
  std::string commands;              // how to reproduce
  std::string generation;            // the "## Generation" section (generation.hpp), or empty
  std::string generation_answer;     // its one-line verdicts, added to the summary
};

const Run* find_run(const ReportInput& in, const std::string& variant, int seed);
double flops_per_token(const ReportInput& in, const std::string& variant);

// Per seed: `variant`'s matching ratio against the baseline on one loss and axis
// (step_matching_ratio), or with `reverse` the baseline's against the variant's final
// loss (reverse_matching_ratio).
std::vector<std::optional<double>> matching_ratios(const ReportInput& in, const MetricSpec& m,
                                                   const std::string& variant, Axis axis, bool reverse = false);

// Writes report.md, summary.json, loss.png (against steps), loss-flops.png and loss-wallclock.png;
// returns the markdown. Throws mot::Error if gnuplot fails.
std::string write_report(const ReportInput& in);

}  // namespace mot::compare
