#include "mot/compare/manifest.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::compare {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// FNV-1a over the whole file: regenerating a corpus in place (another seed, another
// size) must not pass for the data the earlier runs trained on.
std::string fingerprint(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail(p.string(), ": cannot read");
  uint64_t h = 1469598103934665603ull;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    for (std::streamsize i = 0; i < f.gcount(); ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 1099511628211ull;
  }
  char out[64];
  std::snprintf(out, sizeof out, "%llu bytes, fnv1a %016llx", static_cast<unsigned long long>(fs::file_size(p)),
                static_cast<unsigned long long>(h));
  return out;
}

json describe_data(const std::string& data) {
  json files = json::object();
  std::error_code ec;
  if (fs::is_directory(data, ec)) {
    for (const auto& e : fs::directory_iterator(data))
      if (e.is_regular_file()) files[e.path().filename().string()] = fingerprint(e.path());
  } else if (fs::is_regular_file(data, ec)) {
    files[fs::path(data).filename().string()] = fingerprint(data);
  } else {
    fail(data, ": data not found (a shard directory or a .jsonl file)");
  }
  return {{"path", fs::weakly_canonical(fs::absolute(data)).string()}, {"files", files}};
}

// The first thing that differs between two descriptions, in words.
std::string first_difference(const json& was, const json& now) {
  auto names = [](const json& j) {
    std::string s;
    for (const auto& v : j) {
      if (!s.empty()) s += ",";
      s += v.is_string() ? v.get<std::string>() : v.dump();
    }
    return s;
  };
  const bool well_formed = was.is_object() && was.value("format", "") == "mot-compare" && was.contains("data") &&
                          was["data"].is_object() && was["data"].contains("path") && was["data"].contains("files") &&
                          was.contains("steps") && was.contains("seeds") && was.contains("variants") &&
                          was.contains("configs") && was["configs"].is_object();
  if (!well_formed) return "its compare.json is not a mot compare description";
  if (was["data"]["path"] != now["data"]["path"])
    return cat("data ", was["data"]["path"].get<std::string>(), " there, ", now["data"]["path"].get<std::string>(),
               " asked");
  if (was["data"]["files"] != now["data"]["files"])
    return cat("the data in ", now["data"]["path"].get<std::string>(), " changed since the comparison started");
  if (was["steps"] != now["steps"]) return cat(was["steps"].dump(), " steps there, ", now["steps"].dump(), " asked");
  if (was["seeds"] != now["seeds"])
    return cat("seeds ", names(was["seeds"]), " there, ", names(now["seeds"]), " asked");
  if (was["variants"] != now["variants"])
    return cat("variants ", names(was["variants"]), " there, ", names(now["variants"]), " asked");
  for (const auto& v : now["variants"]) {
    const std::string n = v.get<std::string>();
    const json patch = json::diff(was["configs"].value(n, json()), now["configs"][n]);
    if (!patch.empty())
      return cat("variant ", n, ": config key ", patch[0].value("path", std::string("?")), " differs");
  }
  return "";
}

}  // namespace

json describe_comparison(const std::vector<Variant>& variants, const std::vector<int>& seeds, int64_t steps,
                         const std::string& data) {
  json names = json::array(), configs = json::object();
  for (const auto& v : variants) {
    names.push_back(v.name);
    json c = v.config.to_json();
    // Each run sets its own seed, and threads follow --parallel; neither changes what
    // is being compared.
    c["train"].erase("seed");
    c["train"].erase("threads");
    c["train"]["steps"] = steps;
    configs[v.name] = c;
  }
  return {{"format", "mot-compare"}, {"version", 1},       {"data", describe_data(data)},
          {"steps", steps},          {"seeds", seeds},     {"variants", names},
          {"configs", configs}};
}

// What DIR holds besides the lock file its caller holds.
std::vector<fs::path> entries_besides_lock(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename() != ".lock") out.push_back(it->path());
  return out;
}

void claim_compare_dir(const std::string& dir, const json& description, bool fresh) {
  const std::string manifest = dir + "/compare.json";
  std::error_code ec;
  const std::vector<fs::path> held = entries_besides_lock(dir);
  const bool exists = !held.empty();  // a comparison (or anything else) is already there
  const bool ours = fs::exists(manifest, ec) || fs::exists(dir + "/report.md", ec);
  if (exists && fresh) {
    // --fresh deletes, so only what a comparison wrote: never a directory of other files.
    if (!ours) fail(dir, ": holds no earlier comparison; --fresh deletes only those");
    // Everything but the lock file the caller holds (deleting it would unlock).
    for (const auto& p : held) {
      fs::remove_all(p, ec);
      if (ec) fail(p.string(), ": cannot delete: ", ec.message());
    }
  } else if (exists && fs::exists(manifest, ec)) {
    json was;
    try {
      std::ifstream f(manifest);
      was = json::parse(f);
    } catch (const json::exception&) {
      fail(manifest, ": not valid JSON (use another --out, or --fresh to start over)");
    }
    const std::string diff = first_difference(was, description);
    if (!diff.empty())
      fail(dir, " holds a different comparison (", diff, "); use another --out, or --fresh to discard it");
    return;
  } else if (exists && ours) {
    fail(dir, ": holds a report from a version of mot without compare.json; --fresh starts it over");
  } else if (exists) {
    fail(dir, ": not empty and holds no compare.json (not a mot compare directory); choose another --out");
  }
  io::write_file_atomic(manifest, description.dump(2) + "\n");
}

}  // namespace mot::compare
