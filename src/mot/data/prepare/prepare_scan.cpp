#include "mot/data/prepare/prepare_scan.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"

namespace mot::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr size_t kMaxWarnings = 1000;         // summary.json keeps this many caption warnings
constexpr size_t kMaxJsonlLine = size_t{1} << 20;

struct Entry {
  std::string rel;
  uint64_t bytes = 0;
};

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Own recursive walk (not recursive_directory_iterator) so an unreadable folder is
// reported and skipped instead of ending the walk, and links to folders are not
// followed (no cycles). Order does not matter: entries are sorted afterwards.
void walk(const fs::path& dir, const std::string& prefix, const fs::path& exclude, Scan& s,
          std::vector<Entry>& out) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  // A folder that cannot be read counts as one skipped entry, like a file.
  if (ec) {
    ++s.files;
    s.skipped.push_back({prefix.empty() ? "." : prefix, "cannot read folder: " + ec.message()});
    return;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) {
      ++s.files;
      s.skipped.push_back({prefix.empty() ? "." : prefix, "cannot read folder: " + ec.message()});
      return;
    }
    const std::string name = it->path().filename().string();
    const std::string rel = prefix.empty() ? name : prefix + "/" + name;
    if (name.empty() || name[0] == '.') {
      ++s.hidden;
      continue;
    }
    std::error_code e1, e2;
    const fs::file_status link = it->symlink_status(e1), target = it->status(e2);
    if (fs::is_directory(target)) {
      if (fs::is_symlink(link)) {
        ++s.files;
        s.skipped.push_back({rel, "link to a folder (not followed)"});
      } else if (exclude.empty() || !fs::equivalent(it->path(), exclude, e1)) {
        walk(it->path(), rel, exclude, s, out);
      }
      continue;
    }
    ++s.files;
    if (!fs::is_regular_file(target)) {
      s.skipped.push_back({rel, fs::is_symlink(link) ? "broken link" : "not a regular file"});
      continue;
    }
    const uintmax_t size = fs::file_size(it->path(), e1);
    if (e1) {
      s.skipped.push_back({rel, "cannot read: " + e1.message()});
      continue;
    }
    out.push_back({rel, static_cast<uint64_t>(size)});
  }
}

std::string stem_of(const std::string& rel) {
  const size_t slash = rel.rfind('/'), dot = rel.rfind('.');
  return dot == std::string::npos || (slash != std::string::npos && dot < slash) ? rel : rel.substr(0, dot);
}

std::string ext_of(const std::string& rel) {
  const std::string stem = stem_of(rel);
  return lower(rel.substr(stem.size()));
}

std::string read_small(const std::string& path, size_t limit, std::string* why) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *why = "cannot open";
    return {};
  }
  std::string s(limit + 1, '\0');
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  s.resize(static_cast<size_t>(f.gcount()));
  if (s.size() > limit) *why = cat("caption file larger than ", limit / 1024, " KiB");
  return s;
}

// The captions of one captions.jsonl line: a string or a list of strings.
std::vector<json> caption_values(const json& v) {
  if (v.is_string()) return {v};
  if (v.is_array()) return std::vector<json>(v.begin(), v.end());
  return {};
}

class Walker {
 public:
  Walker(Scan& s, const std::vector<std::unique_ptr<MediaKind>>& kinds) : s_(s), kinds_(kinds) {}

  void classify(const std::vector<Entry>& entries) {
    std::vector<const Entry*> texts, jsonls;
    for (const Entry& e : entries) {
      const std::string ext = ext_of(e.rel), name = e.rel.substr(e.rel.rfind('/') + 1);
      const int kind = kind_of(ext);
      if (name == "captions.jsonl") {
        if (e.bytes == 0) s_.skipped.push_back({e.rel, "empty file"});
        else jsonls.push_back(&e);
      } else if (kind >= 0) {
        std::string why = e.bytes == 0 ? "empty file" : kinds_[kind]->pending();
        stems_[stem_of(e.rel)].push_back(e.rel);
        if (!why.empty()) {
          skipped_media_[e.rel] = why;
          s_.skipped.push_back({e.rel, why});
        } else {
          by_rel_[e.rel] = s_.items.size();
          add_item(e, kind);
        }
      } else if (e.bytes == 0) {
        s_.skipped.push_back({e.rel, "empty file"});
      } else if (ext == ".txt") {
        texts.push_back(&e);
      } else {
        s_.skipped.push_back({e.rel, ext.empty() ? "unsupported file type (no extension)"
                                                 : "unsupported file type (" + ext + ")"});
      }
    }
    for (const Entry* e : texts) text_file(*e);
    for (const Entry* e : jsonls) jsonl_file(*e);
  }

 private:
  int kind_of(const std::string& ext) const {
    for (size_t k = 0; k < kinds_.size(); ++k)
      for (const auto& x : kinds_[k]->extensions())
        if (x == ext) return static_cast<int>(k);
    return -1;
  }

  // A .txt next to a media file of the same name is its caption; otherwise a document.
  void text_file(const Entry& e) {
    auto st = stems_.find(stem_of(e.rel));
    if (st == stems_.end()) {
      add_item(e, -1);
      return;
    }
    std::vector<size_t> targets;
    for (const auto& media : st->second)
      if (auto it = by_rel_.find(media); it != by_rel_.end()) targets.push_back(it->second);
    if (targets.empty()) {
      const std::string& media = st->second.front();
      s_.skipped.push_back({e.rel, "caption of " + media + ", which is skipped (" + skipped_media_[media] + ")"});
      return;
    }
    std::string why;
    const std::string raw = read_small(s_.path(e.rel), kMaxCaptionBytes, &why);
    if (why.empty()) clean_caption(raw, &why);
    if (!why.empty()) {
      s_.skipped.push_back({e.rel, why});
      return;
    }
    const auto file = static_cast<uint32_t>(s_.caption_files.size());
    s_.caption_files.push_back(e.rel);
    for (size_t t : targets) add_caption(t, CaptionRef{.file = file});
  }

  void jsonl_file(const Entry& e) {
    std::ifstream f(s_.path(e.rel), std::ios::binary);
    if (!f) {
      s_.skipped.push_back({e.rel, "cannot open"});
      return;
    }
    const auto file = static_cast<uint32_t>(s_.caption_files.size());
    s_.caption_files.push_back(e.rel);
    const size_t slash = e.rel.rfind('/');
    const std::string dir = slash == std::string::npos ? "" : e.rel.substr(0, slash + 1);
    std::string line;
    uint64_t offset = 0;
    for (int64_t n = 1; std::getline(f, line); ++n, offset += line.size() + 1) {
      auto warn = [&](const std::string& why) { warning(cat(e.rel, ":", n, ": ", why)); };
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (line.size() > kMaxJsonlLine) { warn("line longer than 1 MiB"); continue; }
      json v;
      try {
        v = json::parse(line);
      } catch (const json::exception&) {
        warn("not a JSON object (or not UTF-8)");
        continue;
      }
      if (!v.is_object()) { warn("not a JSON object"); continue; }
      int kind = -1;
      for (size_t k = 0; k < kinds_.size() && kind < 0; ++k)
        if (v.contains(kinds_[k]->caption_key()) && v[kinds_[k]->caption_key()].is_string()) kind = static_cast<int>(k);
      if (kind < 0) { warn("no \"image\" or \"audio\" path"); continue; }
      const std::string target = v[kinds_[kind]->caption_key()].get<std::string>();
      const std::string rel = fs::path(dir + target).lexically_normal().generic_string();
      if (target.empty() || target[0] == '/' || rel.rfind("../", 0) == 0 || rel == "..") {
        warn("path '" + target + "' is outside the input folder");
        continue;
      }
      const std::vector<json> caps = v.contains("caption") ? caption_values(v["caption"]) : std::vector<json>{};
      if (caps.empty()) { warn("no \"caption\" string (or list of strings)"); continue; }
      auto it = by_rel_.find(rel);
      if (it == by_rel_.end()) {
        if (auto sk = skipped_media_.find(rel); sk != skipped_media_.end())
          warn("'" + target + "' is skipped (" + sk->second + ")");
        else
          warn("no file '" + target + "' in the input");
        continue;
      }
      for (size_t k = 0; k < caps.size(); ++k) {
        std::string why;
        if (!caps[k].is_string()) why = "a caption is not a string";
        else clean_caption(caps[k].get<std::string>(), &why);
        if (!why.empty()) { warn(why); continue; }
        add_caption(it->second, CaptionRef{.file = file, .line = n, .offset = offset, .length = line.size(),
                                           .sub = static_cast<uint32_t>(k)});
      }
    }
  }

  void add_item(const Entry& e, int kind) {
    Item it;
    it.rel = e.rel;
    it.bytes = e.bytes;
    it.kind = kind;
    s_.items.push_back(std::move(it));
  }

  void add_caption(size_t item, CaptionRef ref) {
    s_.items[item].captions.push_back(ref);
    ++s_.captions;
  }

  void warning(std::string w) {
    if (s_.warnings.size() < kMaxWarnings) s_.warnings.push_back(std::move(w));
    else if (s_.warnings.size() == kMaxWarnings) s_.warnings.push_back("(more caption warnings left out)");
  }

  Scan& s_;
  const std::vector<std::unique_ptr<MediaKind>>& kinds_;
  std::unordered_map<std::string, std::vector<std::string>> stems_;  // "dir/name" -> media files
  std::unordered_map<std::string, size_t> by_rel_;                    // usable media -> item
  std::unordered_map<std::string, std::string> skipped_media_;        // skipped media -> reason
};

}  // namespace

Scan scan_input(const std::string& in, const std::string& exclude,
                const std::vector<std::unique_ptr<MediaKind>>& kinds, uint64_t seed) {
  std::error_code ec;
  if (!fs::exists(in, ec)) fail(in, ": no such folder");
  if (!fs::is_directory(in, ec)) fail(in, ": not a folder");
  Scan s;
  s.root = in;
  while (s.root.size() > 1 && s.root.back() == '/') s.root.pop_back();
  const fs::path ex = !exclude.empty() && fs::exists(exclude, ec) ? fs::path(exclude) : fs::path();
  std::vector<Entry> entries;
  walk(s.root, "", ex, s, entries);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.rel < b.rel; });
  Walker(s, kinds).classify(entries);
  std::sort(s.items.begin(), s.items.end(), [](const Item& a, const Item& b) { return a.rel < b.rel; });
  // Items moved: caption refs stay valid (they point at files, not items).
  for (Item& it : s.items) {
    uint64_t h = hash_string(it.rel) ^ (seed * 0x9e3779b97f4a7c15ull);
    it.hash = splitmix64(h);
  }
  std::sort(s.skipped.begin(), s.skipped.end(), [](const Skip& a, const Skip& b) { return a.rel < b.rel; });
  return s;
}

void assign_validation(Scan& s, double fraction) {
  for (Item& it : s.items) it.val = held_out(it.hash, fraction);
}

std::string read_caption(const Scan& s, const CaptionRef& ref) {
  const std::string& rel = s.caption_files.at(ref.file);
  std::string why, text;
  if (ref.line < 0) {
    text = clean_caption(read_small(s.path(rel), kMaxCaptionBytes, &why), &why);
  } else {
    std::ifstream f(s.path(rel), std::ios::binary);
    std::string line(ref.length, '\0');
    f.seekg(static_cast<std::streamoff>(ref.offset));
    if (!f || !f.read(line.data(), static_cast<std::streamsize>(line.size()))) fail(rel, ": changed while preparing");
    try {
      const json v = json::parse(line);
      text = clean_caption(caption_values(v.at("caption")).at(ref.sub).get<std::string>(), &why);
    } catch (const json::exception&) {
      why = "changed while preparing";
    } catch (const std::out_of_range&) {
      why = "changed while preparing";
    }
  }
  if (!why.empty()) fail(rel, ": ", why);
  return text;
}

}  // namespace mot::data
