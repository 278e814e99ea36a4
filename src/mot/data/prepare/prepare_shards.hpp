// Where `mot data prepare` puts finished documents. Training documents fill
// train-000.shard, train-001.shard, ... of at most `shard_tokens` tokens each (a
// document is never split), so memory holds one shard's tokens at a time. Validation
// documents (a small share) are kept until the end: when every document kind present
// has at least kMinValTokens tokens, each kind is its own validation set
// (val-<kind>.shard, as `mot data synth` writes), else they all go into one set
// (val-000.shard), so no set is too short for training with long sequences to read.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/data/format/shard.hpp"

namespace mot::data {

constexpr uint64_t kMinValTokens = 4097;  // seq_len 4096 + 1: the paper configs' windows

class ShardSink {
 public:
  ShardSink(std::string dir, std::vector<ModalityRange> mods, uint64_t shard_tokens);
  void add(bool val, const std::string& kind, std::span<const uint32_t> doc);
  void finish();  // writes the last training shard and the validation shards
  uint64_t documents() const { return docs_[0] + docs_[1]; }
  // Per shard, and totals per split: documents by kind, tokens by modality.
  const nlohmann::json& summary() const { return summary_; }

 private:
  struct Buffer {
    std::vector<uint32_t> tokens;
    std::vector<uint64_t> offsets{0};
    std::vector<std::string> kinds;  // per document
  };
  void write(const std::string& name, const Buffer& b, const char* split);
  void flush_train();
  std::string dir_;
  std::vector<ModalityRange> mods_;
  uint64_t shard_tokens_;
  Buffer train_, val_;
  int next_train_ = 0;
  uint64_t docs_[2] = {0, 0};
  nlohmann::json summary_ = nlohmann::json::object();
};

}  // namespace mot::data
