#include "mot/compare/generation.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/data/media/image.hpp"
#include "mot/evalgen/evalgen.hpp"

namespace mot::compare {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kPictureScenes = 8;

struct Row {
  const char* key;
  const char* label;
};
const Row kRows[] = {
    {"image.exact", "captions → images: whole scene exact"},
    {"image.count_acc", "captions → images: object count"},
    {"image.shape_acc", "captions → images: shapes"},
    {"image.colour_acc", "captions → images: colours"},
    {"image.size_acc", "captions → images: stated sizes"},
    {"image.relation_acc", "captions → images: stated relations"},
    {"caption.exact", "images → captions: exact"},
    {"caption.slot_acc", "images → captions: slot accuracy"},
    {"caption.cider", "images → captions: CIDEr-D"},
    {"speech.exact", "speech → text: exact"},
    {"speech.slot_acc", "speech → text: slot accuracy"},
    {"speech.cider", "speech → text: CIDEr-D"},
};

std::string f3(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

std::string mean_range(const std::vector<double>& v) {
  double s = 0, lo = v[0], hi = v[0];
  for (double x : v) s += x, lo = std::min(lo, x), hi = std::max(hi, x);
  if (v.size() == 1) return f3(s);
  return f3(s / v.size()) + " (" + f3(lo) + "–" + f3(hi) + ")";
}

std::vector<double> per_seed(const GenerationResults& g, const std::string& v, const std::vector<int>& seeds,
                             const char* key) {
  std::vector<double> out;
  for (int s : seeds) {
    auto it = g.runs.find({v, s});
    if (it != g.runs.end() && it->second.contains(key)) out.push_back(it->second[key].get<double>());
  }
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

// "yes — ... higher in every seed" / "no — lower in every seed" / "no clear difference".
std::string judge(const GenerationResults& g, const std::string& v, const std::string& base,
                  const std::vector<int>& seeds, const char* key, const char* what) {
  const std::vector<double> a = per_seed(g, v, seeds, key), b = per_seed(g, base, seeds, key);
  if (a.size() != b.size() || a.empty()) return "not measured";
  size_t higher = 0, lower = 0;
  for (size_t i = 0; i < a.size(); ++i) higher += a[i] > b[i], lower += a[i] < b[i];
  const std::string nums = cat(what, " ", f3(mean(a)), " vs ", f3(mean(b)));
  if (higher == a.size()) return cat("yes (", nums, ", higher in every seed)");
  if (lower == a.size()) return cat("no, worse (", nums, ", lower in every seed)");
  return cat("no clear difference (", nums, "; higher in ", higher, " of ", a.size(), " seeds)");
}

// Rows of images (the corpus's, then each variant's), columns the first held-out scenes.
void write_picture(const std::string& path, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::vector<data::Image>> imgs;
  for (const auto& r : rows) {
    imgs.emplace_back();
    for (const auto& p : r) imgs.back().push_back(data::read_png(p));
  }
  if (imgs.empty() || imgs[0].empty()) return;
  data::write_png(path, data::image_grid(imgs, 3, 4, 72));
}

std::string image_name(int i) {
  char b[32];
  std::snprintf(b, sizeof b, "images/%03d.png", i);
  return b;
}

}  // namespace

bool has_generation_ground_truth(const std::string& data) { return fs::exists(fs::path(data) / "val-scenes.jsonl"); }

GenerationResults evaluate_generation(const std::string& out_dir, const std::string& data,
                                      const std::vector<std::string>& variants, const std::vector<int>& seeds,
                                      int64_t scenes, const std::string& who) {
  GenerationResults g;
  g.scenes = scenes;
  EvalgenOptions base;
  base.data = data;
  base.n = scenes;
  base.baseline = "truth";
  base.out = out_dir + "/generation-corpus";
  g.truth = run_evalgen(base);
  base.baseline = "shuffled";
  base.out.clear();
  g.shuffled = run_evalgen(base);
  for (int s : seeds)
    for (const auto& v : variants) {
      const std::string run = cat(out_dir, "/seed-", s, "/", v), model = run + "/model.safetensors";
      const std::string dir = run + "/evalgen", done = dir + "/evalgen.json";
      std::error_code ec;
      if (fs::exists(done) && fs::last_write_time(done, ec) >= fs::last_write_time(model, ec)) {
        std::ifstream in(done);
        try {
          json j = json::parse(in);
          if (j.value("n", int64_t{0}) == scenes) {
            g.runs[{v, s}] = std::move(j);
            continue;
          }
        } catch (const json::exception&) {
          // A damaged result is recomputed.
        }
      }
      EvalgenOptions o;
      o.model = model;
      o.data = data;
      o.n = scenes;
      o.seed = static_cast<uint64_t>(s);
      o.out = dir;
      json j = run_evalgen(o);
      std::fprintf(stderr, "%s: evalgen seed %d %s: image exact %.3f, caption slot accuracy %.3f, CIDEr-D %.3f (%.1f s)\n",
                   who.c_str(), s, v.c_str(), j["image.exact"].get<double>(), j["caption.slot_acc"].get<double>(),
                   j["caption.cider"].get<double>(), j["seconds"].get<double>());
      g.runs[{v, s}] = std::move(j);
    }
  return g;
}

std::string generation_section(const GenerationResults& g, const std::string& out_dir,
                               const std::vector<std::string>& variants, const std::vector<int>& seeds,
                               std::string& answer) {
  const bool transfusion = g.truth.value("setting", "") == "transfusion";
  std::ostringstream md;
  md << "## Generation\n\n`mot evalgen` on the final model of every run: " << g.scenes
     << " held-out scenes, "
     << (transfusion ? "images sampled by DDIM (50 steps, classifier-free guidance 3) and captions at temperature 1"
                     : "sampled at temperature 1")
     << " (seed = the run's seed), scored exactly against the scenes' "
        "ground truth: generated images are analysed back into objects and checked against what the prompt "
        "caption states; generated captions are parsed with the corpus grammar and checked against the scene. "
        "Mean over seeds (min–max); higher is better. *Corpus* is the ceiling (each scene's own "
     << (transfusion ? "image" : "VQ image")
     << " and caption through the same scorer), *another scene* the chance level (a different scene's).\n\n";
  md << "| metric |";
  for (const auto& v : variants) md << " " << v << " |";
  md << " corpus | another scene |\n| --- |";
  for (size_t i = 0; i < variants.size() + 2; ++i) md << " --- |";
  md << "\n";
  for (const Row& r : kRows) {
    if (!g.truth.contains(r.key)) continue;
    md << "| " << r.label << " |";
    for (const auto& v : variants) {
      const std::vector<double> x = per_seed(g, v, seeds, r.key);
      md << " " << (x.empty() ? "not measured" : mean_range(x)) << " |";
    }
    md << " " << f3(g.truth[r.key].get<double>()) << " | " << f3(g.shuffled[r.key].get<double>()) << " |\n";
  }
  // The picture: the same held-out captions for every variant (seed of the first run).
  const int cols = static_cast<int>(std::min<int64_t>(kPictureScenes, g.scenes));
  std::vector<std::vector<std::string>> rows(1);
  for (int i = 0; i < cols; ++i) rows[0].push_back(out_dir + "/generation-corpus/" + image_name(i));
  for (const auto& v : variants) {
    rows.emplace_back();
    for (int i = 0; i < cols; ++i) rows.back().push_back(cat(out_dir, "/seed-", seeds[0], "/", v, "/evalgen/", image_name(i)));
  }
  write_picture(out_dir + "/generation.png", rows);
  md << "\nImages generated for the first " << cols << " held-out captions (columns). Top row: the corpus's own "
        "image; then one row per variant (";
  for (size_t i = 0; i < variants.size(); ++i) md << (i ? ", " : "") << variants[i];
  md << "; seed " << seeds[0] << "):\n\n![generated images](generation.png)\n\n";
  std::ifstream in(out_dir + "/generation-corpus/generations.jsonl");
  std::string line;
  for (int i = 0; i < cols && std::getline(in, line); ++i) {
    try {
      md << i + 1 << ". " << json::parse(line).at("caption_prompt").get<std::string>() << "\n";
    } catch (const json::exception&) {
      break;
    }
  }
  md << "\n";
  answer.clear();
  for (size_t i = 1; i < variants.size(); ++i)
    answer += cat("- **Generation** (", variants[i], " vs ", variants[0], "): better images? ",
                  // Transfusion's pixel images rarely get a whole scene exact at our sizes: judge their shapes.
                  transfusion ? judge(g, variants[i], variants[0], seeds, "image.shape_acc", "shape accuracy")
                              : judge(g, variants[i], variants[0], seeds, "image.exact", "whole-scene exact"),
                  "; better captions? ",
                  judge(g, variants[i], variants[0], seeds, "caption.slot_acc", "slot accuracy"), ".\n");
  return md.str();
}

}  // namespace mot::compare
