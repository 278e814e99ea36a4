// libFuzzer target: Shard::parse must reject hostile bytes with mot::Error only, and
// anything it accepts must satisfy the invariants the trainer relies on.
#include <cstdint>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/data/format/shard.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto s = mot::data::Shard::parse({data, size}, "fuzz");
    std::vector<int32_t> tokens(s.n_tokens());
    s.read_tokens(0, tokens.size(), tokens.data());
    for (int32_t t : tokens)
      if (t < 0 || static_cast<uint32_t>(t) >= s.vocab_size()) __builtin_trap();
    if (s.doc_offset(0) != 0 || s.doc_offset(s.n_docs()) != s.n_tokens()) __builtin_trap();
    for (size_t d = 1; d <= s.n_docs(); ++d)
      if (s.doc_offset(d) < s.doc_offset(d - 1)) __builtin_trap();
  } catch (const mot::Error&) {
  }
  return 0;
}
