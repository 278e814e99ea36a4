#include "mot/data/format/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/data/media/latents.hpp"

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

namespace {

// Parses an image's "latents" or "noise": `n` vectors of D finite numbers, appended to out.
void parse_vectors(const nlohmann::json& v, int64_t n, int64_t D, const std::string& where, const char* key,
                   std::vector<float>& out) {
  if (!v.is_array()) fail(where, ": '", key, "' is not a list of vectors");
  if (static_cast<int64_t>(v.size()) != n)
    fail(where, ": '", key, "' holds ", v.size(), " vectors for an image span of ", n, " positions");
  for (size_t i = 0; i < v.size(); ++i) {
    const auto& vec = v[i];
    if (!vec.is_array()) fail(where, ": '", key, "'[", i, "] is not a list of numbers");
    if (static_cast<int64_t>(vec.size()) != D)
      fail(where, ": '", key, "'[", i, "] has latent width ", vec.size(), "; the model's latent_dim is ", D);
    for (size_t j = 0; j < vec.size(); ++j) {
      if (!vec[j].is_number()) fail(where, ": '", key, "'[", i, "][", j, "] is not a number");
      const double x = vec[j].get<double>();
      const float f = static_cast<float>(x);
      if (!std::isfinite(x) || !std::isfinite(f)) fail(where, ": '", key, "'[", i, "][", j, "] is not a finite float");
      out.push_back(f);
    }
  }
}

// Fills row.latents/noise/span_t from j["images"] for the runs of -2 in row.tokens.
void parse_images(const nlohmann::json& j, const ModelConfig& c, const std::string& where, JsonlRow& row) {
  const int cm = c.continuous_modality();
  const Modality& m = c.modalities[cm];
  const int64_t D = m.latent_dim(), P = m.patches_per_image();
  std::vector<std::pair<int64_t, int64_t>> runs;  // (start, length)
  const auto& tk = row.tokens;
  for (size_t t = 0; t < tk.size(); ++t)
    if (tk[t] == kContinuousEntry && (t == 0 || tk[t - 1] != kContinuousEntry)) {
      size_t e = t;
      while (e < tk.size() && tk[e] == kContinuousEntry) ++e;
      if (e == tk.size() || tk[e] == -1)
        fail(where, ": the row ends inside an image span (a continuous entry may not be a row's last entry)");
      runs.push_back({static_cast<int64_t>(t), static_cast<int64_t>(e - t)});
    }
  const bool has = j.contains("images");
  if (has && !j["images"].is_array()) fail(where, ": 'images' is not a list");
  const size_t n_images = has ? j["images"].size() : 0;
  if (n_images != runs.size())
    fail(where, ": ", runs.size(), " image span(s) of -2 entries but ", n_images, " image(s) in 'images'");
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto [at, len] = runs[k];
    const std::string w = cat(where, ": image ", k);
    if (len != P)
      fail(w, ": a continuous span of ", len, " positions at position ", at, "; the ", m.name, " modality has ", P,
           " patches per image");
    const auto& im = j["images"][k];
    if (!im.is_object() || !im.contains("latents")) fail(w, ": expected {\"latents\": [[...]...], \"noise\": ..., \"t\": τ}");
    for (auto it = im.begin(); it != im.end(); ++it)
      if (it.key() != "latents" && it.key() != "noise" && it.key() != "t")
        fail(w, ": unknown key '", it.key(), "' (expected latents, noise, t)");
    if (im.contains("noise") != im.contains("t")) fail(w, ": 'noise' and 't' go together (give both or neither)");
    parse_vectors(im["latents"], len, D, w, "latents", row.latents);
    if (im.contains("t")) {
      if (!im["t"].is_number_integer()) fail(w, ": 't' is not an integer diffusion step");
      const int64_t tau = im["t"].get<int64_t>();
      if (tau < 0 || tau >= c.diffusion_steps)
        fail(w, ": diffusion step t = ", tau, " is outside [0, ", c.diffusion_steps - 1, "]");
      row.span_t.push_back(static_cast<int32_t>(tau));
      parse_vectors(im["noise"], len, D, w, "noise", row.noise);
    } else {
      row.span_t.push_back(-1);
      row.noise.resize(row.latents.size(), 0.0f);
    }
  }
}

// The JSONL reader behind read_jsonl_rows and read_jsonl_data; `c` null: tokens only.
std::vector<JsonlRow> parse_jsonl(const std::string& path, int64_t vocab_size, const ModelConfig* c) {
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
  return parse_jsonl_stream(f, path, vocab_size, c);
}

}  // namespace

std::vector<JsonlRow> parse_jsonl_stream(std::istream& f, const std::string& path, int64_t vocab_size,
                                         const ModelConfig* c) {
  const bool continuous = c && c->has_continuous();
  const bool jsonl_name = fs::path(path).extension() == ".jsonl";
  std::vector<JsonlRow> rows;
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
      if (line.find("NaN") != std::string::npos || line.find("Infinity") != std::string::npos)
        fail(path, ":", lineno, ": not valid JSON: NaN or Infinity (latents and noise must be finite numbers)");
      fail(path, ":", lineno, ": not valid JSON");
    }
    if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array())
      fail(path, ":", lineno, ": expected {\"tokens\": [ids...]}");
    JsonlRow row;
    row.tokens.reserve(j["tokens"].size());
    bool padding = false;
    for (const auto& v : j["tokens"]) {
      if (!v.is_number_integer()) fail(path, ":", lineno, ": token ", v.dump(), " is not an integer");
      const int64_t t = v.get<int64_t>();
      if (t == -1) { padding = true; row.tokens.push_back(-1); continue; }
      const bool image = continuous && t == kContinuousEntry;
      if (!image && (t < 0 || t >= vocab_size))
        fail(path, ":", lineno, ": token id ", t, " is outside the vocabulary [0, ", vocab_size, ")",
             t == kContinuousEntry ? " (-2 marks a continuous position; this model has no continuous modality)" : "");
      if (padding) fail(path, ":", lineno, ": token ", t, " after -1 padding (-1 may only pad the end of a row)");
      row.tokens.push_back(static_cast<int32_t>(t));
    }
    if (continuous) {
      parse_images(j, *c, cat(path, ":", lineno), row);
    } else if (j.contains("images")) {
      fail(path, ":", lineno, ": 'images' given but the model has no continuous modality");
    }
    rows.push_back(std::move(row));
  }
  if (f.bad()) fail(path, ": read error");
  if (rows.empty()) fail(path, ": no data (the file holds no token rows)");
  return rows;
}

std::vector<std::vector<int32_t>> read_jsonl_rows(const std::string& path, int64_t vocab_size) {
  std::vector<std::vector<int32_t>> out;
  for (auto& r : parse_jsonl(path, vocab_size, nullptr)) out.push_back(std::move(r.tokens));
  return out;
}

std::vector<JsonlRow> read_jsonl_data(const std::string& path, const ModelConfig& c) {
  return parse_jsonl(path, c.vocab_size, &c);
}

namespace {

class JsonlSource final : public RowSource {
 public:
  JsonlSource(const std::string& path, const ModelConfig& c) : path_(path), D_(c.has_continuous() ? c.latent_dim() : 0) {
    rows_ = read_jsonl_data(path, c);
    for (const auto& r : rows_) len_ = std::max<int64_t>(len_, static_cast<int64_t>(r.tokens.size()));
    if (len_ < 2) fail(path, ": every row has fewer than 2 tokens, so there is nothing to predict");
    if (len_ - 1 > c.max_seq_len)
      fail(path, ": a row of ", len_, " tokens is longer than max_seq_len + 1 = ", c.max_seq_len + 1);
    for (auto& r : rows_) r.tokens.resize(len_, -1);
    n_ = static_cast<int64_t>(rows_.size());
  }
  int64_t row_len() const override { return len_; }
  int64_t n_rows() const override { return n_; }
  void fill(uint64_t index, int32_t* dst) const override {
    const auto& r = rows_[index % n_].tokens;
    std::copy(r.begin(), r.end(), dst);
  }
  int64_t latent_dim() const override { return D_; }
  void fill_continuous(uint64_t index, std::vector<float>& latents, std::vector<float>& noise,
                       std::vector<int32_t>& span_t) const override {
    const JsonlRow& r = rows_[index % n_];
    latents.insert(latents.end(), r.latents.begin(), r.latents.end());
    noise.insert(noise.end(), r.noise.begin(), r.noise.end());
    span_t.insert(span_t.end(), r.span_t.begin(), r.span_t.end());
  }
  std::string describe() const override { return cat(path_, " (", n_, " rows of up to ", len_, " tokens)"); }

 private:
  std::string path_;
  int64_t D_;
  int64_t len_ = 0, n_ = 0;
  std::vector<JsonlRow> rows_;
};

class ShardSource final : public RowSource {
 public:
  ShardSource(const std::vector<std::string>& files, const ModelConfig& c, int64_t seq_len, bool shuffle,
              uint64_t seed, Use use)
      : seq_(seq_len), shuffle_(shuffle), seed_(seed), packed_(c.has_continuous()),
        D_(packed_ ? c.latent_dim() : 0) {
    if (files.empty()) fail("no shard files");
    std::vector<ModalityRange> want;
    for (const auto& m : c.modalities)
      if (!m.continuous) want.push_back({m.name, static_cast<uint32_t>(m.begin), static_cast<uint32_t>(m.end)});
    first_.push_back(0);
    for (const auto& f : files) {
      shards_.push_back(Shard::open(f));
      const Shard& s = shards_.back();
      if (s.modalities() != want)
        fail(f, ": the shard's modality table does not match the model's modalities (names and ranges)");
      if (s.n_images() > 0) check_images(f, s, c);
      int64_t w = 0;
      if (packed_) {
        w = pack_documents(f, shards_.size() - 1);
      } else {
        w = s.n_tokens() > 1 ? static_cast<int64_t>(s.n_tokens() - 1) / seq_ : 0;
      }
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
    const int64_t w = window(index);
    if (packed_) {
      const Row& r = rows_[w];
      shards_[r.shard].read_tokens(r.begin, r.end - r.begin, dst);
      std::fill(dst + (r.end - r.begin), dst + seq_ + 1, -1);
      return;
    }
    const size_t k = std::upper_bound(first_.begin(), first_.end(), w) - first_.begin() - 1;
    shards_[k].read_tokens(static_cast<size_t>((w - first_[k]) * seq_), seq_ + 1, dst);
  }
  int64_t latent_dim() const override { return D_; }
  void fill_continuous(uint64_t index, std::vector<float>& latents, std::vector<float>& noise,
                       std::vector<int32_t>& span_t) const override {
    if (!packed_) return;
    const Row& r = rows_[window(index)];
    const Shard& s = shards_[r.shard];
    for (size_t k = s.first_image_at_or_after(r.begin); k < s.n_images() && s.image_start(k) < r.end; ++k) {
      append_patch_latents(s.image_pixels(k), latents);
      noise.resize(latents.size(), 0.0f);
      span_t.push_back(-1);
    }
  }
  std::string describe() const override {
    if (packed_) return cat(shards_.size(), " shard(s), ", n_, " rows of whole documents (at most ", seq_ + 1, " entries)");
    return cat(shards_.size(), " shard(s), ", n_, " windows of ", seq_ + 1, " tokens");
  }

 private:
  struct Row {
    uint32_t shard;
    uint64_t begin, end;  // token positions: whole documents
  };

  // A shard's images must be the model's continuous modality, with its geometry.
  static void check_images(const std::string& f, const Shard& s, const ModelConfig& c) {
    const int cm = c.continuous_modality();
    if (cm < 0)
      fail(f, ": the shard holds ", s.n_images(), " continuous images (Transfusion data) but the model has no "
           "continuous modality");
    const Modality& m = c.modalities[cm];
    if (s.image_modality() != m.name || s.image_size() != m.image_size || s.image_channels() != m.channels ||
        s.image_patch() != m.patch)
      fail(f, ": the shard's images ('", s.image_modality(), "', ", s.image_size(), "x", s.image_size(), "x",
           s.image_channels(), ", patch ", s.image_patch(), ") are not the model's '", m.name, "' (", m.image_size, "x",
           m.image_size, "x", m.channels, ", patch ", m.patch, ")");
  }

  // Greedy rows of consecutive whole documents of shard k; returns how many.
  int64_t pack_documents(const std::string& f, size_t k) {
    const Shard& s = shards_[k];
    const uint64_t cap = static_cast<uint64_t>(seq_ + 1);
    const size_t before = rows_.size();
    uint64_t begin = 0, end = 0;  // the open row: documents [begin, end), none yet when equal
    for (size_t d = 0; d < s.n_docs(); ++d) {
      const uint64_t a = s.doc_offset(d), b = s.doc_offset(d + 1);
      if (a == b) continue;
      if (b - a > cap)
        fail(f, ": document ", d, " has ", b - a, " entries, more than seq_len + 1 = ", cap,
             " (Transfusion rows hold whole documents so no image is cut; raise train.seq_len)");
      if (end == begin) begin = a;
      if (b - begin > cap) {  // documents are contiguous: a == end
        rows_.push_back({static_cast<uint32_t>(k), begin, end});
        begin = a;
      }
      end = b;
    }
    if (end > begin) rows_.push_back({static_cast<uint32_t>(k), begin, end});
    return static_cast<int64_t>(rows_.size() - before);
  }

  int64_t window(uint64_t index) const {
    const uint64_t epoch = index / n_;
    int64_t w = static_cast<int64_t>(index % n_);
    if (shuffle_) w = permuted(epoch, w);
    return w;
  }

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
  bool packed_;
  int64_t D_;
  std::vector<Shard> shards_;
  std::vector<int64_t> first_;
  std::vector<Row> rows_;  // packed_ only
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
  static_assert(kShardImageEntry == kContinuousEntry);
  batch.rows = rows;
  batch.len = src.row_len();
  batch.tokens.resize(rows * batch.len);
  for (int64_t r = 0; r < rows; ++r) src.fill(cursor + r, batch.tokens.data() + r * batch.len);
  batch.latent_dim = src.latent_dim();
  batch.latents.clear();
  batch.noise.clear();
  batch.span_t.clear();
  if (batch.latent_dim > 0)
    for (int64_t r = 0; r < rows; ++r) src.fill_continuous(cursor + r, batch.latents, batch.noise, batch.span_t);
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
