#include "mot/compare/report.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>

#include "mot/compare/plot.hpp"
#include "mot/compare/summary_json.hpp"
#include "mot/core/error.hpp"
#include "mot/core/units.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::compare {

namespace {

std::string f4(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}
std::string f2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}
std::string human(double v) { return format_count(v, 2); }

// mean (min–max) over values
std::string mean_spread(const std::vector<double>& v, std::string (*fmt)(double)) {
  double s = 0, lo = v[0], hi = v[0];
  for (double x : v) { s += x; lo = std::min(lo, x); hi = std::max(hi, x); }
  if (v.size() == 1) return fmt(s);
  return fmt(s / v.size()) + " (" + fmt(lo) + "–" + fmt(hi) + ")";
}

// The mean over the seeds that reached the target, saying how many did not: a cell is
// never empty.
std::string reached_cell(const std::vector<double>& reached, size_t seeds) {
  if (reached.empty()) return "not reached";
  std::string s = mean_spread(reached, f2);
  if (reached.size() < seeds) s += cat(", not reached in ", seeds - reached.size(), " of ", seeds, " seeds");
  return s;
}

const Run& run_of(const ReportInput& in, const std::string& v, int seed);

struct AxisInfo {
  Axis axis;
  const char* heading;  // "Step matching"
  const char* unit;     // what is counted
  const char* png;
  const char* xlabel;
};
const AxisInfo kAxes[] = {
    {Axis::Steps, "Step matching", "training steps", "loss.png", "training step"},
    {Axis::Flops, "FLOPs matching", "training FLOPs", "loss-flops.png", "training FLOPs"},
    {Axis::Seconds, "Wall-clock matching", "training seconds", "loss-wallclock.png",
     "training seconds (sum of step times)"},
};

std::vector<double> reached_of(const std::vector<std::optional<double>>& r) {
  std::vector<double> out;
  for (const auto& x : r)
    if (x) out.push_back(*x);
  return out;
}

// A ratio counts as an effect when every one of the n seeds has it below this.
constexpr double kEffectBelow = 0.95;
bool every_seed_below(const std::vector<double>& v, size_t n, double limit) {
  return v.size() == n && !v.empty() && *std::max_element(v.begin(), v.end()) < limit;
}

// The step-matching verdict, judged on every seed: an effect only when all agree.
std::string verdict(const std::vector<double>& reached, size_t n, const std::string& v, const std::string& base,
                    const std::vector<double>& behind) {
  double mx = 0;
  for (double r : reached) mx = std::max(mx, r);
  if (every_seed_below(reached, n, kEffectBelow))
    return cat(v, " reaches ", base, "'s final loss in ", mean_spread(reached, f2), " of the steps in every seed");
  if (reached.size() == n && mx <= 1.0)
    return cat("about even: ", v, " matches ", base, " only at the end of training in some seed");
  if (reached.empty()) {
    std::string s = cat(v, " never reaches ", base, "'s final loss");
    if (behind.size() == n) s += cat(" (", base, " reaches ", v, "'s final loss in ", mean_spread(behind, f2), " of its steps)");
    return s;
  }
  return cat("not stable: ", v, " reaches ", base, "'s final loss in ", reached.size(), " of ", n, " seeds");
}

// "0.77 of the steps, 0.74–0.79": the mean, what it counts, the range over seeds.
std::string ratio_and_range(const std::vector<double>& v, const char* unit) {
  double s = 0;
  for (double x : v) s += x;
  std::string out = f2(s / static_cast<double>(v.size())) + unit;
  if (v.size() > 1)
    out += ", " + f2(*std::min_element(v.begin(), v.end())) + "–" + f2(*std::max_element(v.begin(), v.end()));
  return out;
}

// One plain-language line per variant: the losses on which every seed puts it ahead of
// the baseline (reaches the baseline's final loss within 95% of the steps), the ones on
// which every seed puts it behind (the baseline reaches the variant's final loss within
// 95% of its steps; shown as the variant's extrapolated step ratio, 1 / that share), and
// the rest (even, or the seeds disagree). The same threshold as verdict().
std::string one_line(const ReportInput& in, const std::string& v) {
  const std::string& base = in.variants.front().name;
  std::vector<std::string> ahead, behind, even;
  for (const auto& m : in.metrics) {
    const auto fwd = reached_of(matching_ratios(in, m, v, Axis::Steps));
    const auto rev = reached_of(matching_ratios(in, m, v, Axis::Steps, true));
    const size_t n = in.seeds.size();
    if (every_seed_below(fwd, n, kEffectBelow)) {
      ahead.push_back(cat(m.label, " (", ratio_and_range(fwd, " of the steps"), ")"));
    } else if (fwd.empty() && every_seed_below(rev, n, kEffectBelow)) {
      std::vector<double> slower;
      for (double r : rev) slower.push_back(1.0 / r);
      behind.push_back(cat(m.label, " (", ratio_and_range(slower, "x the steps"), ")"));
    } else {
      even.push_back(m.label);
    }
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "; " : "") + v[i];
    return s;
  };
  std::string s = cat("**", v, " against ", base, " in one line:** ");
  std::vector<std::string> parts;
  if (!ahead.empty()) parts.push_back("Ahead in every seed on " + list(ahead));
  if (!behind.empty()) parts.push_back("Behind in every seed on " + list(behind));
  if (!even.empty()) parts.push_back("Even, or the seeds disagree, on " + list(even));
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? ". " : "") + parts[i];
  return s + ".\n\n";
}

void table_head(std::ostringstream& md, const std::vector<std::string>& cols) {
  md << "|";
  for (const auto& c : cols) md << " " << c << " |";
  md << "\n|";
  for (size_t i = 0; i < cols.size(); ++i) md << " --- |";
  md << "\n";
}

void matching_section(std::ostringstream& md, const ReportInput& in, const AxisInfo& ax) {
  const std::string& base = in.variants.front().name;
  md << "## " << ax.heading << " against " << base << "\n\n"
     << "The " << ax.unit << " a variant needs to first reach the " << base
     << " model's *final* validation loss (linearly interpolated between evaluations), divided by the " << ax.unit
     << " " << base << " used in total, per seed (same seed = same data order). Below 1: the variant gets there "
     << "with less; \"not reached\": it never did within the run.";
  if (ax.axis == Axis::Flops) md << " FLOPs per token as `mot info` counts them (attention and MoE routers included).";
  if (ax.axis == Axis::Seconds)
    md << " Seconds are the runs' summed step times (validation and checkpoints excluded); they are comparable "
          "only between runs that shared the machine alike.";
  md << "\n\n";
  std::vector<std::string> cols = {"validation loss", "variant"};
  for (int seed : in.seeds) cols.push_back(cat("seed ", seed));
  cols.emplace_back("mean (min–max)");
  if (ax.axis == Axis::Steps) cols.push_back("verdict");
  table_head(md, cols);
  for (const auto& m : in.metrics)
    for (size_t vi = 1; vi < in.variants.size(); ++vi) {
      const std::string& v = in.variants[vi].name;
      const auto r = matching_ratios(in, m, v, ax.axis);
      md << "| " << m.label << " | " << v << " |";
      for (const auto& x : r) md << " " << (x ? f2(*x) : "not reached") << " |";
      md << " " << reached_cell(reached_of(r), r.size()) << " |";
      if (ax.axis == Axis::Steps) md << " " << verdict(reached_of(r), r.size(), v, base,
                                                            reached_of(matching_ratios(in, m, v, ax.axis, true))) << " |";
      md << "\n";
    }
  md << "\n";
}

const Run& run_of(const ReportInput& in, const std::string& v, int seed) {
  if (const Run* r = find_run(in, v, seed)) return *r;
  fail("internal: the run of ", v, " seed ", seed, " is missing from the report input");
}

}  // namespace

std::vector<std::optional<double>> matching_ratios(const ReportInput& in, const MetricSpec& m, const std::string& v,
                                                   Axis a, bool reverse) {
  const std::string& base = in.variants.front().name;
  std::vector<std::optional<double>> out;
  for (int seed : in.seeds) {
    const Series d = on_axis(run_of(in, base, seed).metrics, m.key, a, flops_per_token(in, base));
    const Series x = on_axis(run_of(in, v, seed).metrics, m.key, a, flops_per_token(in, v));
    out.push_back(reverse ? reverse_matching_ratio(d, x) : step_matching_ratio(d, x));
  }
  return out;
}

const Run* find_run(const ReportInput& in, const std::string& v, int seed) {
  for (const auto& r : in.runs)
    if (r.variant == v && r.seed == seed) return &r;
  return nullptr;
}

double flops_per_token(const ReportInput& in, const std::string& v) {
  for (const auto& x : in.variants)
    if (x.name == v) return x.train_flops_per_token;
  fail("internal: unknown variant ", v);
}

std::string write_report(const ReportInput& in) {
  std::ostringstream md;
  const std::string& base = in.variants.front().name;
  md << "# " << in.title << "\n\n" << in.setup << "\n\n## Variants\n\n";
  table_head(md, {"variant", "what it is", "parameters", "active per token", "training FLOPs per token"});
  for (const auto& v : in.variants)
    md << "| " << v.name << " | " << v.description << " | " << human(static_cast<double>(v.params_total)) << " | "
       << human(static_cast<double>(v.params_active)) << " | " << human(v.train_flops_per_token) << " |\n";
  md << "\nValidation loss against training steps, training FLOPs and wall-clock seconds (dotted: single "
        "seeds; solid: mean over seeds):\n\n";
  for (const auto& ax : kAxes) md << "![validation loss against " << ax.unit << "](" << ax.png << ")\n\n";

  md << "## Final validation loss\n\nMean over " << in.seeds.size()
     << " seed(s), with the range (min–max) in brackets. Lower is better.\n\n";
  std::vector<std::string> cols = {"validation loss"};
  for (const auto& v : in.variants) cols.push_back(v.name);
  table_head(md, cols);
  for (const auto& m : in.metrics) {
    md << "| " << m.label << " |";
    for (const auto& v : in.variants) {
      std::vector<double> finals;
      for (int seed : in.seeds)
        if (const Series s = on_axis(run_of(in, v.name, seed).metrics, m.key, Axis::Steps, 0); !s.empty())
          finals.push_back(s.final_value());
      md << " " << (finals.empty() ? "not logged" : mean_spread(finals, f4)) << " |";
    }
    md << "\n";
  }
  md << "\n";
  for (const auto& ax : kAxes) matching_section(md, in, ax);

  md << "## Summary\n\n";
  for (size_t vi = 1; vi < in.variants.size(); ++vi) md << one_line(in, in.variants[vi].name);
  for (const auto& m : in.metrics)
    for (size_t vi = 1; vi < in.variants.size(); ++vi) {
      const std::string& v = in.variants[vi].name;
      const auto steps = matching_ratios(in, m, v, Axis::Steps);
      md << "- **" << m.label << "** (" << v << "): " << verdict(reached_of(steps), steps.size(), v, base,
                                           reached_of(matching_ratios(in, m, v, Axis::Steps, true)))
         << "; FLOPs-matching " << reached_cell(reached_of(matching_ratios(in, m, v, Axis::Flops)), in.seeds.size())
         << ", wall-clock-matching " << reached_cell(reached_of(matching_ratios(in, m, v, Axis::Seconds)), in.seeds.size())
         << ".\n";
    }

  md << in.generation_answer;
  if (!in.generation.empty()) md << "\n" << in.generation;

  md << "\n## Time per step\n\nMedian milliseconds per training step and total training seconds of each run.\n\n";
  cols = {"variant"};
  for (int seed : in.seeds) cols.push_back(cat("seed ", seed));
  table_head(md, cols);
  for (const auto& v : in.variants) {
    md << "| " << v.name << " |";
    for (int seed : in.seeds) {
      const std::vector<double> ms = on_axis(run_of(in, v.name, seed).metrics, "ms", Axis::Steps, 0).values;
      if (ms.empty()) { md << " not logged |"; continue; }
      double total = 0;
      for (double x : ms) total += x;
      md << " " << f2(median(ms)) << " ms/step, " << f2(total / 1000.0) << " s |";
    }
    md << "\n";
  }
  md << "\n## Reproduce\n\n```\n" << in.commands << "\n```\n";

  for (const auto& ax : kAxes) plot_curves(in, ax.axis, ax.png, ax.xlabel);
  write_summary_json(in);
  const std::string text = md.str();
  io::write_file_atomic(in.out_dir + "/report.md", text);
  return text;
}

}  // namespace mot::compare
