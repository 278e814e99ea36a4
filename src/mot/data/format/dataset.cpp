#include "mot/data/format/dataset.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"

namespace mot::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDataForms = "data is a token-shard directory or a .jsonl file of {\"tokens\": [ids...]} rows";

// A path given as data that is not a .jsonl file: say what it is and what to pass.
[[noreturn]] void not_jsonl(const std::string& path, const std::string& what) {
  const fs::path p(path);
  if (p.extension() == ".shard" || what == "a token shard") {
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    fail(path, ": is a single token shard; ", kDataForms, ": pass its directory ", dir);
  }
  fail(path, ": ", what, ", not a .jsonl file (", kDataForms, ")");  // what: "is a binary file"
}

}  // namespace

std::vector<std::vector<int32_t>> read_jsonl_rows(const std::string& path, int64_t vocab_size) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path, ": is a directory, not a .jsonl file (", kDataForms, ")");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open data file");
  {
    char head[8] = {};
    f.read(head, sizeof head);
    if (f.gcount() == 8 && std::string(head, 7) == "MOTSHRD") not_jsonl(path, "a token shard");
    f.clear();
    f.seekg(0);
  }
  const bool jsonl_name = fs::path(path).extension() == ".jsonl";
  std::vector<std::vector<int32_t>> rows;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.find('\0') != std::string::npos) not_jsonl(path, "is a binary file");
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      if (rows.empty() && !jsonl_name) fail(path, ":", lineno, ": not valid JSON, and the name does not end in .jsonl (", kDataForms, ")");
      fail(path, ":", lineno, ": not valid JSON");
    }
    if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array())
      fail(path, ":", lineno, ": expected {\"tokens\": [ids...]}");
    std::vector<int32_t> row;
    row.reserve(j["tokens"].size());
    bool padding = false;
    for (const auto& v : j["tokens"]) {
      if (!v.is_number_integer()) fail(path, ":", lineno, ": token ", v.dump(), " is not an integer");
      const int64_t t = v.get<int64_t>();
      if (t == -1) { padding = true; row.push_back(-1); continue; }
      if (t < 0 || t >= vocab_size)
        fail(path, ":", lineno, ": token id ", t, " is outside the vocabulary [0, ", vocab_size, ")");
      if (padding) fail(path, ":", lineno, ": token ", t, " after -1 padding (-1 may only pad the end of a row)");
      row.push_back(static_cast<int32_t>(t));
    }
    rows.push_back(std::move(row));
  }
  if (f.bad()) fail(path, ": read error");
  if (rows.empty()) fail(path, ": no data (the file holds no token rows)");
  return rows;
}

namespace {

class JsonlSource final : public RowSource {
 public:
  JsonlSource(const std::string& path, const ModelConfig& c) : path_(path) {
    auto rows = read_jsonl_rows(path, c.vocab_size);
    for (const auto& r : rows) len_ = std::max<int64_t>(len_, static_cast<int64_t>(r.size()));
    if (len_ < 2) fail(path, ": every row has fewer than 2 tokens, so there is nothing to predict");
    if (len_ - 1 > c.max_seq_len)
      fail(path, ": a row of ", len_, " tokens is longer than max_seq_len + 1 = ", c.max_seq_len + 1);
    data_.assign(rows.size() * len_, -1);
    for (size_t i = 0; i < rows.size(); ++i) std::copy(rows[i].begin(), rows[i].end(), data_.begin() + i * len_);
    n_ = static_cast<int64_t>(rows.size());
  }
  int64_t row_len() const override { return len_; }
  int64_t n_rows() const override { return n_; }
  void fill(uint64_t index, int32_t* dst) const override {
    const int64_t i = static_cast<int64_t>(index % n_);
    std::copy(data_.begin() + i * len_, data_.begin() + (i + 1) * len_, dst);
  }
  std::string describe() const override { return cat(path_, " (", n_, " rows of up to ", len_, " tokens)"); }

 private:
  std::string path_;
  int64_t len_ = 0, n_ = 0;
  std::vector<int32_t> data_;
};

class ShardSource final : public RowSource {
 public:
  ShardSource(const std::vector<std::string>& files, const ModelConfig& c, int64_t seq_len, bool shuffle,
              uint64_t seed, Use use)
      : seq_(seq_len), shuffle_(shuffle), seed_(seed) {
    if (files.empty()) fail("no shard files");
    std::vector<ModalityRange> want;
    for (const auto& m : c.modalities)
      want.push_back({m.name, static_cast<uint32_t>(m.begin), static_cast<uint32_t>(m.end)});
    first_.push_back(0);
    for (const auto& f : files) {
      shards_.push_back(Shard::open(f));
      const Shard& s = shards_.back();
      if (s.modalities() != want)
        fail(f, ": the shard's modality table does not match the model's modalities (names and ranges)");
      const int64_t w = s.n_tokens() > 1 ? static_cast<int64_t>(s.n_tokens() - 1) / seq_ : 0;
      first_.push_back(first_.back() + w);
    }
    n_ = first_.back();
    if (n_ == 0) {
      size_t tokens = 0;
      for (const Shard& s : shards_) tokens = std::max(tokens, s.n_tokens());
      const std::string dir = fs::path(files.front()).parent_path().string();
      const std::string why = cat("its ", files.size() == 1 ? "shard holds " : "longest shard holds ", tokens,
                                  " tokens, fewer than seq_len + 1 = ", seq_ + 1);
      if (use == Use::Default) use = shuffle ? Use::Train : Use::Read;
      switch (use) {
        case Use::Evaluate: fail("no targets to evaluate in ", dir, ": ", why, " (use a smaller --seq-len)");
        case Use::Validate: fail("no validation window in ", dir, ": ", why, " (lower train.seq_len or remove those val shards)");
        case Use::Train: fail("nothing to train on in ", dir, ": ", why, " (lower train.seq_len or add data)");
        default: fail("no window of ", seq_ + 1, " tokens in ", dir, ": ", why, " (lower the sequence length)");
      }
    }
  }
  int64_t row_len() const override { return seq_ + 1; }
  int64_t n_rows() const override { return n_; }
  void fill(uint64_t index, int32_t* dst) const override {
    const uint64_t epoch = index / n_;
    int64_t w = static_cast<int64_t>(index % n_);
    if (shuffle_) w = permuted(epoch, w);
    const size_t k = std::upper_bound(first_.begin(), first_.end(), w) - first_.begin() - 1;
    shards_[k].read_tokens(static_cast<size_t>((w - first_[k]) * seq_), seq_ + 1, dst);
  }
  std::string describe() const override {
    return cat(shards_.size(), " shard(s), ", n_, " windows of ", seq_ + 1, " tokens");
  }

 private:
  // Window order of an epoch: a seeded Fisher-Yates permutation, rebuilt when the
  // epoch changes (once per epoch, not per step).
  int64_t permuted(uint64_t epoch, int64_t w) const {
    if (perm_epoch_ != epoch || perm_.empty()) {
      perm_.resize(n_);
      std::iota(perm_.begin(), perm_.end(), 0);
      Rng rng(seed_ * 1000003ull + epoch);
      for (int64_t i = n_ - 1; i > 0; --i) std::swap(perm_[i], perm_[rng.below(i + 1)]);
      perm_epoch_ = epoch;
    }
    return perm_[w];
  }
  int64_t seq_;
  bool shuffle_;
  uint64_t seed_;
  std::vector<Shard> shards_;
  std::vector<int64_t> first_;
  int64_t n_ = 0;
  mutable std::vector<int64_t> perm_;
  mutable uint64_t perm_epoch_ = 0;
};

}  // namespace

std::unique_ptr<RowSource> jsonl_source(const std::string& path, const ModelConfig& c) {
  return std::make_unique<JsonlSource>(path, c);
}

std::unique_ptr<RowSource> shard_source(const std::vector<std::string>& files, const ModelConfig& c,
                                        int64_t seq_len, bool shuffle, uint64_t seed, Use use) {
  return std::make_unique<ShardSource>(files, c, seq_len, shuffle, seed, use);
}

DataDir list_data_dir(const std::string& dir) {
  DataDir d;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file() || e.path().extension() != ".shard") continue;
    const std::string name = e.path().filename().string();
    (name.rfind("val", 0) == 0 ? d.val : d.train).push_back(e.path().string());
  }
  if (ec) fail(dir, ": cannot list data directory: ", ec.message());
  std::sort(d.train.begin(), d.train.end());
  std::sort(d.val.begin(), d.val.end());
  return d;
}

std::unique_ptr<RowSource> open_source(const std::string& path, const ModelConfig& c, int64_t seq_len,
                                       const std::string& split, bool shuffle, uint64_t seed, Use use) {
  if (path.empty()) fail("no data given (use --data, or set [data] path in the config)");
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    DataDir d = list_data_dir(path);
    if (d.train.empty() && d.val.empty()) fail(path, ": no *.shard files in this directory (empty data)");
    if (seq_len > c.max_seq_len) fail("seq_len ", seq_len, " exceeds the model's max_seq_len ", c.max_seq_len);
    const auto& files = split == "val" ? d.val : d.train;
    if (files.empty()) {
      if (split == "val") return nullptr;
      fail(path, ": no training shards (only val*.shard files)");
    }
    return shard_source(files, c, seq_len, shuffle, seed, use);
  }
  if (!fs::exists(path, ec)) fail(path, ": no such file or directory");
  if (split == "val") return nullptr;
  return jsonl_source(path, c);
}

namespace {
std::string val_set_name(const std::string& file) {
  std::string stem = fs::path(file).stem().string();
  stem = stem.substr(3);  // drop "val"
  if (!stem.empty() && (stem[0] == '-' || stem[0] == '_')) stem.erase(0, 1);
  // Drop a trailing shard index: "img2cap-001" -> "img2cap", "000" -> "".
  auto cut = stem.find_last_not_of("0123456789");
  if (cut == std::string::npos) return "";
  if (cut + 1 < stem.size() && (stem[cut] == '-' || stem[cut] == '_')) stem.erase(cut);
  return stem;
}
}  // namespace

std::vector<NamedSource> open_val_sets(const std::string& path, const ModelConfig& c, int64_t seq_len) {
  std::vector<NamedSource> out;
  std::error_code ec;
  if (path.empty() || !fs::is_directory(path, ec)) return out;
  DataDir d = list_data_dir(path);
  std::map<std::string, std::vector<std::string>> sets;
  for (const auto& f : d.val) sets[val_set_name(f)].push_back(f);
  for (auto& [name, files] : sets) out.push_back({name, shard_source(files, c, seq_len, false, 0, Use::Validate)});
  return out;
}

void fill_batch(const RowSource& src, uint64_t cursor, int64_t rows, TokenBatch& batch) {
  batch.rows = rows;
  batch.len = src.row_len();
  batch.tokens.resize(rows * batch.len);
  for (int64_t r = 0; r < rows; ++r) src.fill(cursor + r, batch.tokens.data() + r * batch.len);
}

int64_t count_targets(const TokenBatch& batch) {
  int64_t n = 0;
  for (int64_t r = 0; r < batch.rows; ++r) {
    int64_t valid = 0;
    while (valid < batch.len && batch.at(r, valid) != -1) ++valid;
    for (int64_t t = 0; t + 1 < valid; ++t) n += batch.at(r, t) >= 0 && batch.at(r, t + 1) >= 0;
  }
  return n;
}

}  // namespace mot::data
