// Token shards: the on-disk training data format (documented in README.md).
//
//   offset  size  field
//   0       8     magic "MOTSHRD1"
//   8       4     version (u32: 1, or 2 with an image section)
//   12      4     token_bytes (u32: 2 or 4)
//   16      8     n_tokens (u64)
//   24      8     n_docs (u64)
//   32      4     n_modalities (u32, >= 1)
//   36      4     reserved (u32, = 0)
//   40      40*M  modality table: char name[32] (NUL-padded), u32 begin, u32 end
//   ...           tokens: n_tokens little-endian unsigned ints of token_bytes each
//   ...           doc offsets: n_docs + 1 u64, [0] = 0, non-decreasing, [n_docs] = n_tokens
//   end of file must be exactly after the doc offsets (version 1), or after the image
//   section (version 2, the Transfusion setting's continuous images, SPEC 2b):
//   32            char name[32]: the continuous modality (NUL-padded)
//   16            u32 image_size, u32 channels, u32 patch, u32 reserved (= 0)
//   8             n_images (u64)
//   8*n_images    each image's first token position, increasing; an image occupies
//                 P = (image_size/patch)² positions [start, start + P), inside one
//                 document, and those positions hold token 0 in the token section
//   n_images*B    each image's pixels, B = image_size²·channels bytes in latent order
//                 (patch tiles in raster order, each in (row, column, channel) order)
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

// A shard's continuous images (version 2). Pixels of image k: pixels[k*B, (k+1)*B).
struct ShardImages {
  std::string name;
  uint32_t image_size = 0, channels = 0, patch = 0;
  std::vector<uint64_t> starts;
  std::vector<uint8_t> pixels;
  size_t bytes_per_image() const { return size_t{image_size} * image_size * channels; }
};

// read_tokens() writes this at the positions of a continuous image (= kContinuousEntry).
constexpr int32_t kShardImageEntry = -2;

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
  uint32_t token(size_t i) const;                   // i < n_tokens (0 inside an image)
  // Bulk copy; positions inside an image read as kShardImageEntry.
  void read_tokens(size_t begin, size_t n, int32_t* dst) const;
  uint64_t doc_offset(size_t d) const;              // d <= n_docs
  const std::string& origin() const { return origin_; }

  // Version 2's image section (n_images() = 0 for version 1 shards).
  size_t n_images() const { return n_images_; }
  const std::string& image_modality() const { return image_name_; }
  uint32_t image_size() const { return image_size_; }
  uint32_t image_channels() const { return image_channels_; }
  uint32_t image_patch() const { return image_patch_; }
  uint32_t image_positions() const { return image_patch_ ? (image_size_ / image_patch_) * (image_size_ / image_patch_) : 0; }
  uint64_t image_start(size_t k) const;             // k < n_images
  std::span<const uint8_t> image_pixels(size_t k) const;  // k < n_images, latent order
  size_t first_image_at_or_after(uint64_t pos) const;     // n_images() if none

 private:
  std::string origin_;
  std::shared_ptr<void> mapping_;
  std::span<const uint8_t> bytes_;
  std::vector<ModalityRange> modalities_;
  size_t n_tokens_ = 0, n_docs_ = 0;
  uint32_t token_bytes_ = 2;
  size_t tokens_off_ = 0, docs_off_ = 0;
  std::string image_name_;
  uint32_t image_size_ = 0, image_channels_ = 0, image_patch_ = 0;
  size_t n_images_ = 0, image_starts_off_ = 0, image_pixels_off_ = 0;
};

// Writes a shard atomically; token_bytes = 2 when vocab_size <= 65536, else 4; version
// 2 with `images` (non-null), else version 1. Validates its input the same way open()
// does (throws mot::Error).
void write_shard(const std::string& path, const std::vector<ModalityRange>& modalities,
                 std::span<const uint32_t> tokens, std::span<const uint64_t> doc_offsets,
                 const ShardImages* images = nullptr);

}  // namespace mot::data
