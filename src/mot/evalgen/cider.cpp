#include "mot/evalgen/cider.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "mot/core/error.hpp"

namespace mot {

namespace {

constexpr int kMaxN = 4;
constexpr double kSigma = 6.0;

using Counts = std::array<std::map<std::string, double>, kMaxN>;  // per n: n-gram (words joined by ' ') -> count

Counts ngram_counts(const std::string& caption) {
  const std::vector<std::string> w = caption_words(caption);
  Counts c;
  for (int n = 1; n <= kMaxN; ++n)
    for (size_t i = 0; i + n <= w.size(); ++i) {
      std::string g = w[i];
      for (int k = 1; k < n; ++k) g += ' ' + w[i + k];
      c[n - 1][g] += 1.0;
    }
  return c;
}

struct Vec {
  Counts weight;
  std::array<double, kMaxN> norm{};
  double length = 0;  // bigrams, as coco-caption counts it
};

Vec tf_idf(const Counts& c, const std::map<std::string, double>& df, double log_images) {
  Vec v;
  for (int n = 0; n < kMaxN; ++n) {
    for (const auto& [g, tf] : c[n]) {
      const auto it = df.find(g);
      const double w = tf * (log_images - std::log(std::max(1.0, it == df.end() ? 0.0 : it->second)));
      v.weight[n][g] = w;
      v.norm[n] += w * w;
      if (n == 1) v.length += tf;
    }
    v.norm[n] = std::sqrt(v.norm[n]);
  }
  return v;
}

std::array<double, kMaxN> similarity(const Vec& c, const Vec& s) {
  std::array<double, kMaxN> val{};
  const double delta = c.length - s.length;
  const double penalty = std::exp(-(delta * delta) / (2 * kSigma * kSigma));
  for (int n = 0; n < kMaxN; ++n) {
    for (const auto& [g, wc] : c.weight[n]) {
      const auto it = s.weight[n].find(g);
      if (it != s.weight[n].end()) val[n] += std::min(wc, it->second) * it->second;
    }
    if (c.norm[n] != 0 && s.norm[n] != 0) val[n] /= c.norm[n] * s.norm[n];
    val[n] *= penalty;
  }
  return val;
}

}  // namespace

std::vector<std::string> caption_words(const std::string& caption) {
  std::vector<std::string> words;
  std::string cur;
  for (const char ch : caption) {
    const unsigned char u = static_cast<unsigned char>(ch);
    if (std::isalnum(u)) {
      cur += static_cast<char>(std::tolower(u));
    } else if (!cur.empty()) {
      words.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

CiderScore cider_d(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references) {
  if (candidates.size() != references.size())
    fail("CIDEr-D: ", candidates.size(), " candidates for ", references.size(), " reference sets");
  CiderScore out;
  if (candidates.empty()) return out;
  std::vector<std::vector<Counts>> ref_counts(references.size());
  std::map<std::string, double> df;  // images whose references contain the n-gram
  for (size_t i = 0; i < references.size(); ++i) {
    if (references[i].empty()) fail("CIDEr-D: item ", i, " has no reference caption");
    std::set<std::string> seen;
    for (const std::string& r : references[i]) {
      ref_counts[i].push_back(ngram_counts(r));
      for (const auto& per_n : ref_counts[i].back())
        for (const auto& [g, count] : per_n) seen.insert(g);
    }
    for (const std::string& g : seen) df[g] += 1.0;
  }
  const double log_images = std::log(static_cast<double>(references.size()));
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Vec c = tf_idf(ngram_counts(candidates[i]), df, log_images);
    std::array<double, kMaxN> sum{};
    for (const Counts& r : ref_counts[i]) {
      const std::array<double, kMaxN> s = similarity(c, tf_idf(r, df, log_images));
      for (int n = 0; n < kMaxN; ++n) sum[n] += s[n];
    }
    double mean = 0;
    for (int n = 0; n < kMaxN; ++n) mean += sum[n];
    mean /= kMaxN;
    out.per_item.push_back(10.0 * mean / static_cast<double>(ref_counts[i].size()));
  }
  for (double s : out.per_item) out.corpus += s;
  out.corpus /= static_cast<double>(out.per_item.size());
  return out;
}

}  // namespace mot
