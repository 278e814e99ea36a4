#include "mot/data/prepare/prepare_report.hpp"

#include <cstdio>
#include <map>

#include "mot/core/error.hpp"

namespace mot::data {

using json = nlohmann::json;

namespace {

constexpr size_t kListedSkips = 5;  // skipped files named on the last line

// Sums summary[key]["train"] and ["val"] ({name: count}) into one "name n, ..." text.
std::string both_splits(const json& s, const char* key, uint64_t* total) {
  std::map<std::string, uint64_t> sum;
  *total = 0;
  if (s.contains(key))
    for (const char* split : {"train", "val"})
      if (s[key].contains(split))
        for (auto it = s[key][split].begin(); it != s[key][split].end(); ++it) {
          sum[it.key()] += it.value().get<uint64_t>();
          *total += it.value().get<uint64_t>();
        }
  std::string text;
  for (const auto& [name, n] : sum) text += cat(text.empty() ? "" : ", ", name, " ", n);
  return text;
}

}  // namespace

void print_summary_lines(const json& s, const std::string& out, double secs) {
  uint64_t docs = 0, tokens = 0;
  const std::string by_kind = both_splits(s, "documents", &docs), by_mod = both_splits(s, "tokens", &tokens);
  std::fprintf(stderr, "prepare: wrote %s in %.1f s: %llu documents (%s), %llu tokens (%s)\n", out.c_str(), secs,
               static_cast<unsigned long long>(docs), by_kind.c_str(), static_cast<unsigned long long>(tokens),
               by_mod.c_str());
  const json& sk = s["skipped"];
  std::string line = cat("prepare: ", s["files"]["seen"].get<uint64_t>(), " files seen, ", sk.size(), " skipped");
  for (size_t i = 0; i < sk.size() && i < kListedSkips; ++i)
    line += cat(i ? "; " : ": ", sk[i]["path"].get<std::string>(), " (", sk[i]["reason"].get<std::string>(), ")");
  if (sk.size() > kListedSkips) line += cat("; and ", sk.size() - kListedSkips, " more");
  const size_t warnings = s["caption_warnings"].size();
  if (!sk.empty() || warnings) line += " (all in summary.json)";
  if (warnings) line += cat("; ", warnings, " caption warnings");
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace mot::data
