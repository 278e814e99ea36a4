// Token shards: the on-disk training data format (documented in README.md).
//
//   offset  size  field
//   0       8     magic "MOTSHRD1"
//   8       4     version (u32, = 1)
//   12      4     token_bytes (u32: 2 or 4)
//   16      8     n_tokens (u64)
//   24      8     n_docs (u64)
//   32      4     n_modalities (u32, >= 1)
//   36      4     reserved (u32, = 0)
//   40      40*M  modality table: char name[32] (NUL-padded), u32 begin, u32 end
//   ...           tokens: n_tokens little-endian unsigned ints of token_bytes each
//   ...           doc offsets: n_docs + 1 u64, [0] = 0, non-decreasing, [n_docs] = n_tokens
//   end of file must be exactly after the doc offsets.
// All integers little-endian. Modality ranges are half-open, ordered, non-overlapping
// and cover [0, vocab_size) where vocab_size = last range's end. Every token < vocab_size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mot::data {

struct ModalityRange {
  std::string name;
  uint32_t begin = 0, end = 0;
  bool operator==(const ModalityRange&) const = default;
};

class Shard {
 public:
  // Memory-maps and validates the shard (header, table, every token, offsets).
  // Throws mot::Error("<path>: <reason>") if it is truncated or corrupt.
  static Shard open(const std::string& path);
  static Shard parse(std::span<const uint8_t> bytes, const std::string& origin);  // no copy

  size_t n_tokens() const { return n_tokens_; }
  size_t n_docs() const { return n_docs_; }
  uint32_t vocab_size() const { return modalities_.back().end; }
  const std::vector<ModalityRange>& modalities() const { return modalities_; }
  uint32_t token(size_t i) const;                   // i < n_tokens
  void read_tokens(size_t begin, size_t n, int32_t* dst) const;  // bulk copy
  uint64_t doc_offset(size_t d) const;              // d <= n_docs
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::shared_ptr<void> mapping_;
  std::span<const uint8_t> bytes_;
  std::vector<ModalityRange> modalities_;
  size_t n_tokens_ = 0, n_docs_ = 0;
  uint32_t token_bytes_ = 2;
  size_t tokens_off_ = 0, docs_off_ = 0;
};

// Writes a shard atomically; token_bytes = 2 when vocab_size <= 65536, else 4.
// Validates its input the same way open() does (throws mot::Error).
void write_shard(const std::string& path, const std::vector<ModalityRange>& modalities,
                 std::span<const uint32_t> tokens, std::span<const uint64_t> doc_offsets);

}  // namespace mot::data
