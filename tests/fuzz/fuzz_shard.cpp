// libFuzzer target: Shard::parse must reject hostile bytes with mot::Error only, and
// anything it accepts (version 1, or 2 with images) must satisfy the invariants the
// trainer relies on.
#include <cstdint>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/data/format/shard.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto s = mot::data::Shard::parse({data, size}, "fuzz");
    std::vector<int32_t> tokens(s.n_tokens());
    s.read_tokens(0, tokens.size(), tokens.data());
    // Version 2: positions inside an image read as kShardImageEntry, all others are ids.
    std::vector<bool> in_image(tokens.size(), false);
    uint64_t prev_end = 0;
    for (size_t k = 0; k < s.n_images(); ++k) {
      const uint64_t a = s.image_start(k), P = s.image_positions();
      if (a < prev_end || a + P > tokens.size() || P == 0) __builtin_trap();
      if (s.image_pixels(k).size() != size_t{s.image_size()} * s.image_size() * s.image_channels()) __builtin_trap();
      for (uint64_t i = a; i < a + P; ++i) in_image[i] = true;
      prev_end = a + P;
    }
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t t = tokens[i];
      if (in_image[i] ? t != mot::data::kShardImageEntry : (t < 0 || static_cast<uint32_t>(t) >= s.vocab_size()))
        __builtin_trap();
    }
    if (s.doc_offset(0) != 0 || s.doc_offset(s.n_docs()) != s.n_tokens()) __builtin_trap();
    for (size_t d = 1; d <= s.n_docs(); ++d)
      if (s.doc_offset(d) < s.doc_offset(d - 1)) __builtin_trap();
  } catch (const mot::Error&) {
  }
  return 0;
}
