#include "mot/data/prepare/prepare_shards.hpp"

#include <cstdio>
#include <set>

namespace mot::data {

ShardSink::ShardSink(std::string dir, std::vector<ModalityRange> mods, uint64_t shard_tokens)
    : dir_(std::move(dir)), mods_(std::move(mods)), shard_tokens_(shard_tokens) {}

void ShardSink::add(bool val, const std::string& kind, std::span<const uint32_t> doc) {
  Buffer& b = val ? val_ : train_;
  if (!val && !b.kinds.empty() && b.tokens.size() + doc.size() > shard_tokens_) flush_train();
  b.tokens.insert(b.tokens.end(), doc.begin(), doc.end());
  b.offsets.push_back(b.tokens.size());
  b.kinds.push_back(kind);
  ++docs_[val];
}

void ShardSink::flush_train() {
  if (train_.kinds.empty()) return;
  char name[32];
  std::snprintf(name, sizeof name, "train-%03d.shard", next_train_++);
  write(name, train_, "train");
  train_ = Buffer();
}

void ShardSink::write(const std::string& name, const Buffer& b, const char* split) {
  write_shard(dir_ + "/" + name, mods_, b.tokens, b.offsets);
  std::map<std::string, uint64_t> by_kind, by_mod;
  for (const auto& k : b.kinds) ++by_kind[k];
  std::vector<uint64_t> count(mods_.size(), 0);
  for (uint32_t t : b.tokens)
    for (size_t m = 0; m < mods_.size(); ++m)
      if (t < mods_[m].end) {
        ++count[m];
        break;
      }
  nlohmann::json mods = nlohmann::json::object();
  for (size_t m = 0; m < mods_.size(); ++m) mods[mods_[m].name] = count[m];
  summary_["shards"][name] = {{"documents", b.kinds.size()},
                              {"tokens", b.tokens.size()},
                              {"tokens_by_modality", mods},
                              {"documents_by_kind", by_kind}};
  // Totals per split, accumulated over its shards.
  auto bump = [](nlohmann::json& j, const std::string& key, uint64_t n) {
    j[key] = (j.contains(key) ? j[key].get<uint64_t>() : 0) + n;
  };
  for (const auto& [k, n] : by_kind) bump(summary_["documents"][split], k, n);
  for (size_t m = 0; m < mods_.size(); ++m) bump(summary_["tokens"][split], mods_[m].name, count[m]);
}

void ShardSink::finish() {
  flush_train();
  if (val_.kinds.empty()) {
    summary_["validation_sets"] = "none";
    return;
  }
  std::map<std::string, uint64_t> tokens_by_kind;
  for (size_t d = 0; d < val_.kinds.size(); ++d) tokens_by_kind[val_.kinds[d]] += val_.offsets[d + 1] - val_.offsets[d];
  bool per_kind = true;
  for (const auto& [k, n] : tokens_by_kind) per_kind = per_kind && n >= kMinValTokens;
  summary_["validation_sets"] = per_kind ? "per kind" : "one";
  // A set's documents in input order, cut into shards like the training ones. Names
  // follow the set grouping of `mot train` (dataset.cpp): val-gen.shard, val-gen-001.shard
  // are set "gen"; val-000.shard, val-001.shard are the unnamed set.
  auto write_set = [&](const std::string* only) {
    Buffer b;
    int part = 0;
    auto flush = [&] {
      if (b.kinds.empty()) return;
      char name[64];
      if (!only) std::snprintf(name, sizeof name, "val-%03d.shard", part);
      else if (part == 0) std::snprintf(name, sizeof name, "val-%s.shard", only->c_str());
      else std::snprintf(name, sizeof name, "val-%s-%03d.shard", only->c_str(), part);
      write(name, b, "val");
      b = Buffer();
      ++part;
    };
    for (size_t d = 0; d < val_.kinds.size(); ++d) {
      if (only && val_.kinds[d] != *only) continue;
      const uint64_t n = val_.offsets[d + 1] - val_.offsets[d];
      if (!b.kinds.empty() && b.tokens.size() + n > shard_tokens_) flush();
      b.tokens.insert(b.tokens.end(), val_.tokens.begin() + val_.offsets[d], val_.tokens.begin() + val_.offsets[d + 1]);
      b.offsets.push_back(b.tokens.size());
      b.kinds.push_back(val_.kinds[d]);
    }
    flush();
  };
  if (per_kind) {
    for (const auto& [k, n] : tokens_by_kind) write_set(&k);
  } else {
    write_set(nullptr);
  }
}

}  // namespace mot::data
