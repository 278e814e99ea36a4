#include "mot/compare/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::compare {

namespace fs = std::filesystem;

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

const Run* find_run(const ReportInput& in, const std::string& v, int seed) {
  for (const auto& r : in.runs)
    if (r.variant == v && r.seed == seed) return &r;
  return nullptr;
}

const Series* series(const Run* r, const std::string& key) {
  if (!r) return nullptr;
  auto it = r->metrics.find(key);
  return it == r->metrics.end() || it->second.empty() ? nullptr : &it->second;
}

// mean ± half-range over values
std::string mean_spread(const std::vector<double>& v, std::string (*fmt)(double)) {
  if (v.empty()) return "n/a";
  double s = 0, lo = v[0], hi = v[0];
  for (double x : v) { s += x; lo = std::min(lo, x); hi = std::max(hi, x); }
  if (v.size() == 1) return fmt(s);
  return fmt(s / v.size()) + " (" + fmt(lo) + "–" + fmt(hi) + ")";
}

void plot(const ReportInput& in, const std::vector<const MetricSpec*>& panels) {
  const std::string dir = in.out_dir + "/curves";
  fs::create_directories(dir);
  // One data file per (variant, seed, metric) and one for the mean over seeds.
  std::ostringstream gp;
  const int n = static_cast<int>(panels.size());
  const int cols = n <= 2 ? n : (n <= 4 ? 2 : 3), rows = (n + cols - 1) / cols;
  gp << "set terminal pngcairo size " << 520 * cols << "," << 400 * rows << " font 'sans,10'\n"
     << "set output '" << in.out_dir << "/loss.png'\n"
     << "set multiplot layout " << rows << "," << cols << " title \"" << in.title << "\" font 'sans,13'\n"
     << "set grid\nset key top right\nset xlabel 'training step'\nset ylabel 'validation loss (nats/token)'\n";
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  for (int p = 0; p < n; ++p) {
    const MetricSpec& m = *panels[p];
    std::string safe = m.key;
    std::replace(safe.begin(), safe.end(), '/', '_');
    std::ostringstream cmd;
    cmd << "plot ";
    bool first = true;
    for (size_t vi = 0; vi < in.variants.size(); ++vi) {
      const std::string& v = in.variants[vi];
      std::vector<const Series*> all;
      for (int seed : in.seeds) {
        const Series* s = series(find_run(in, v, seed), m.key);
        if (!s) continue;
        all.push_back(s);
        const std::string file = cat(dir, "/", v, "-seed", seed, "-", safe, ".dat");
        std::ofstream f(file);
        for (size_t i = 0; i < s->steps.size(); ++i) f << s->steps[i] << " " << s->values[i] << "\n";
        cmd << (first ? "" : ", ") << "'" << file << "' with lines lw 1 dt 3 lc rgb '" << colors[vi % 6]
            << "' notitle";
        first = false;
      }
      if (all.empty()) continue;
      const Series mean = mean_series(all);
      const std::string file = cat(dir, "/", v, "-mean-", safe, ".dat");
      std::ofstream f(file);
      for (size_t i = 0; i < mean.steps.size(); ++i) f << mean.steps[i] << " " << mean.values[i] << "\n";
      cmd << (first ? "" : ", ") << "'" << file << "' with linespoints lw 2 pt 7 ps 0.4 lc rgb '" << colors[vi % 6]
          << "' title '" << v << (all.size() > 1 ? cat(" (mean of ", all.size(), " seeds)") : "") << "'";
      first = false;
    }
    gp << "set title \"" << m.label << "\"\n";
    if (!first) gp << cmd.str() << "\n";
  }
  gp << "unset multiplot\n";
  const std::string script = in.out_dir + "/loss.gnuplot";
  io::write_file_atomic(script, gp.str());
  const std::string command = "gnuplot '" + script + "' 2>'" + in.out_dir + "/gnuplot.log'";
  if (std::system(command.c_str()) != 0)
    fail("gnuplot failed to draw ", in.out_dir, "/loss.png (see ", in.out_dir, "/gnuplot.log; is gnuplot installed?)");
}

}  // namespace

std::string write_report(const ReportInput& in) {
  std::ostringstream md;
  const std::string& base = in.variants.front();
  md << "# " << in.title << "\n\n" << in.setup << "\n\n";
  md << "![validation loss curves](loss.png)\n\n";

  md << "## Final validation loss\n\nMean over " << in.seeds.size()
     << " seed(s), with the range (min–max) in brackets. Lower is better.\n\n| metric |";
  for (const auto& v : in.variants) md << " " << v << " |";
  md << "\n| --- |";
  for (size_t i = 0; i < in.variants.size(); ++i) md << " --- |";
  md << "\n";
  for (const auto& m : in.metrics) {
    md << "| " << m.label << " |";
    for (const auto& v : in.variants) {
      std::vector<double> finals;
      for (int seed : in.seeds)
        if (const Series* s = series(find_run(in, v, seed), m.key)) finals.push_back(s->final_value());
      md << " " << mean_spread(finals, f4) << " |";
    }
    md << "\n";
  }

  md << "\n## Step matching against " << base
     << "\n\nThe paper's measure: the training step at which a variant first reaches the " << base
     << " model's *final* validation loss (linearly interpolated between evaluations), divided by " << base
     << "'s step count. Below 1 means the variant needs fewer steps (and, at equal FLOPs per token, fewer FLOPs); "
        "\"not reached\" means it never got there within the run.\n\n| metric | variant |";
  for (int seed : in.seeds) md << " seed " << seed << " |";
  md << " mean | verdict |\n| --- | --- |";
  for (size_t i = 0; i < in.seeds.size(); ++i) md << " --- |";
  md << " --- | --- |\n";
  std::ostringstream summary;
  for (const auto& m : in.metrics) {
    for (size_t vi = 1; vi < in.variants.size(); ++vi) {
      const std::string& v = in.variants[vi];
      md << "| " << m.label << " | " << v << " |";
      std::vector<double> reached;
      int missing = 0;
      for (int seed : in.seeds) {
        const Series* d = series(find_run(in, base, seed), m.key);
        const Series* s = series(find_run(in, v, seed), m.key);
        if (!d || !s) { md << " n/a |"; ++missing; continue; }
        const auto r = step_matching_ratio(*d, *s);
        if (r) { reached.push_back(*r); md << " " << f2(*r) << " |"; }
        else { md << " not reached |"; ++missing; }
      }
      std::string verdict;
      const size_t n = in.seeds.size();
      double mx = 0;
      for (double r : reached) mx = std::max(mx, r);
      if (reached.size() == n && mx < 0.95)
        verdict = cat(v, " reaches ", base, "'s final loss in ", mean_spread(reached, f2), " of the steps in every seed");
      else if (reached.size() == n && mx <= 1.0)
        verdict = cat("about even: ", v, " matches ", base, " only at the end of training in some seed");
      else if (reached.empty())
        verdict = cat(v, " never reaches ", base, "'s final loss");
      else
        verdict = cat("not stable: ", v, " reaches ", base, "'s final loss in ", reached.size(), " of ", n, " seeds");
      md << " " << (reached.empty() ? "—" : mean_spread(reached, f2)) << " | " << verdict << " |\n";
      summary << "- **" << m.label << "** (" << v << "): " << verdict << ".\n";
    }
  }
  md << "\n## Summary\n\n" << summary.str() << "\n";

  md << "## Time per step\n\nMedian milliseconds per training step of each run (runs of different variants may "
        "have shared the machine; compare within a row of seeds).\n\n| variant |";
  for (int seed : in.seeds) md << " seed " << seed << " |";
  md << "\n| --- |";
  for (size_t i = 0; i < in.seeds.size(); ++i) md << " --- |";
  md << "\n";
  for (const auto& v : in.variants) {
    md << "| " << v << " |";
    for (int seed : in.seeds) {
      const Series* s = series(find_run(in, v, seed), "ms");
      if (!s) { md << " n/a |"; continue; }
      std::vector<double> ms = s->values;
      std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
      md << " " << f2(ms[ms.size() / 2]) << " |";
    }
    md << "\n";
  }
  md << "\n## Reproduce\n\n```\n" << in.commands << "\n```\n";

  std::vector<const MetricSpec*> panels;
  for (const auto& m : in.metrics)
    if (m.panel) panels.push_back(&m);
  plot(in, panels);
  const std::string text = md.str();
  io::write_file_atomic(in.out_dir + "/report.md", text);
  return text;
}

}  // namespace mot::compare
