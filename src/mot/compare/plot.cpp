#include "mot/compare/plot.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::compare {

namespace fs = std::filesystem;

namespace {

const char* kAxisName[] = {"steps", "flops", "seconds"};
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

void write_dat(const std::string& file, const Series& s) {
  std::ofstream f(file);
  for (size_t i = 0; i < s.steps.size(); ++i) f << s.steps[i] << " " << s.values[i] << "\n";
  if (!f) fail(file, ": write failed (disk full?)");
}

// The mean curve over seeds: mean x and mean loss at the steps every seed evaluated
// (wall-clock x differs between seeds, so x is averaged like the loss).
Series mean_curve(const std::vector<const Run*>& runs, const std::string& key, Axis axis, double flops) {
  std::vector<Series> xs, ys;
  for (const Run* r : runs) {
    Series y = on_axis(r->metrics, key, Axis::Steps, 0);
    const Series on = on_axis(r->metrics, key, axis, flops);
    if (y.empty() || on.steps.size() != y.steps.size()) continue;
    xs.push_back({y.steps, on.steps});
    ys.push_back(std::move(y));
  }
  std::vector<const Series*> px, py;
  for (size_t i = 0; i < xs.size(); ++i) { px.push_back(&xs[i]); py.push_back(&ys[i]); }
  const Series mx = mean_series(px), my = mean_series(py);
  return {mx.values, my.values};
}

}  // namespace

void plot_curves(const ReportInput& in, Axis axis, const std::string& png, const std::string& xlabel) {
  std::vector<const MetricSpec*> panels;
  for (const auto& m : in.metrics)
    if (m.panel) panels.push_back(&m);
  if (panels.empty()) fail("no validation loss to plot (did the runs evaluate? see eval_every)");
  const std::string dir = in.out_dir + "/curves";
  fs::create_directories(dir);
  const std::string ax = kAxisName[static_cast<int>(axis)];
  const int n = static_cast<int>(panels.size());
  const int cols = n <= 2 ? n : (n <= 4 ? 2 : 3), rows = (n + cols - 1) / cols;
  std::ostringstream gp;
  gp << "set terminal pngcairo size " << 520 * cols << "," << 400 * rows << " font 'sans,10'\n"
     << "set output '" << in.out_dir << "/" << png << "'\n"
     << "set multiplot layout " << rows << "," << cols << " title \"" << in.title << "\" font 'sans,13'\n"
     << "set grid\nset key top right\nset xlabel '" << xlabel << "'\nset ylabel 'validation loss (nats/token)'\n";
  if (axis == Axis::Flops) gp << "set format x '%.1s%c'\n";  // 1.5G rather than 1.5e+09
  for (const MetricSpec* m : panels) {
    std::string safe = m->key;
    std::replace(safe.begin(), safe.end(), '/', '_');
    std::ostringstream cmd;
    bool first = true;
    for (size_t vi = 0; vi < in.variants.size(); ++vi) {
      const std::string& v = in.variants[vi].name;
      const double flops = in.variants[vi].train_flops_per_token;
      const char* colour = kColors[vi % std::size(kColors)];
      std::vector<const Run*> runs;
      for (int seed : in.seeds) {
        const Run* r = find_run(in, v, seed);
        const Series s = r ? on_axis(r->metrics, m->key, axis, flops) : Series{};
        if (s.empty()) continue;
        runs.push_back(r);
        const std::string file = cat(dir, "/", v, "-seed", seed, "-", safe, "-", ax, ".dat");
        write_dat(file, s);
        cmd << (first ? "plot " : ", ") << "'" << file << "' with lines lw 1 dt 3 lc rgb '" << colour << "' notitle";
        first = false;
      }
      if (runs.empty()) continue;
      const std::string file = cat(dir, "/", v, "-mean-", safe, "-", ax, ".dat");
      write_dat(file, mean_curve(runs, m->key, axis, flops));
      cmd << (first ? "plot " : ", ") << "'" << file << "' with linespoints lw 2 pt 7 ps 0.4 lc rgb '" << colour
          << "' title '" << v << (runs.size() > 1 ? cat(" (mean of ", runs.size(), " seeds)") : "") << "'";
      first = false;
    }
    gp << "set title \"" << m->label << "\"\n";
    if (!first) gp << cmd.str() << "\n";
  }
  gp << "unset multiplot\n";
  const std::string stem = in.out_dir + "/" + fs::path(png).stem().string();
  io::write_file_atomic(stem + ".gnuplot", gp.str());
  const std::string command = "gnuplot '" + stem + ".gnuplot' 2>'" + stem + ".gnuplot.log'";
  if (std::system(command.c_str()) != 0)
    fail("gnuplot failed to draw ", in.out_dir, "/", png, " (see ", stem, ".gnuplot.log; is gnuplot installed?)");
}

}  // namespace mot::compare
