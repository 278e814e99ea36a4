#include "mot/data/synth/synth_tokens.hpp"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/format/shard.hpp"

namespace mot::data {

SynthDoc synth_document(const ModelConfig& c, uint64_t seed, uint64_t index) {
  Rng rng(seed * 0x9e3779b97f4a7c15ull + index * 7919 + 1);
  SynthDoc d;
  const int M = c.n_modalities();
  const uint32_t bos = c.bos_id >= 0 ? static_cast<uint32_t>(c.bos_id) : 0;
  d.tokens.push_back(bos);
  const uint64_t cls = rng.below(32);
  std::vector<int> order(M);
  std::iota(order.begin(), order.end(), 0);
  for (int i = M - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  for (int m : order) {
    // Modality 0 reserves its first 4 ids for special tokens (BOS etc.).
    const int64_t lo = c.modalities[m].begin + (m == 0 ? 4 : 0);
    const int64_t R = std::max<int64_t>(1, c.modalities[m].end - lo);
    const int64_t len = m == 0 ? 16 + static_cast<int64_t>(rng.below(16)) : 32 + static_cast<int64_t>(rng.below(32));
    // Per-modality rule: next = (k·cls + s·i + r·prev) mod R, with 10% noise.
    const uint64_t k = 3 + 2 * m, s = 1 + m, r = m % 2 ? 5 : 1;
    uint64_t prev = (cls * 7 + m) % R;
    for (int64_t i = 0; i < len; ++i) {
      uint64_t v = (k * cls + s * static_cast<uint64_t>(i) + r * prev) % R;
      if (rng.uniform() < 0.1) v = rng.below(R);
      d.tokens.push_back(static_cast<uint32_t>(lo + v));
      prev = v;
    }
  }
  return d;
}

void write_synth_shards(const ModelConfig& c, const std::string& dir, int64_t train_tokens, int64_t val_tokens,
                        uint64_t seed) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create directory: ", ec.message());
  std::vector<ModalityRange> mods;
  for (const auto& m : c.modalities)
    mods.push_back({m.name, static_cast<uint32_t>(m.begin), static_cast<uint32_t>(m.end)});
  auto write = [&](const std::string& path, int64_t want, uint64_t first_index) {
    std::vector<uint32_t> tokens;
    std::vector<uint64_t> offsets{0};
    for (uint64_t i = first_index; static_cast<int64_t>(tokens.size()) < want; ++i) {
      SynthDoc d = synth_document(c, seed, i);
      tokens.insert(tokens.end(), d.tokens.begin(), d.tokens.end());
      offsets.push_back(tokens.size());
    }
    write_shard(path, mods, tokens, offsets);
  };
  write(dir + "/train-000.shard", train_tokens, 0);
  write(dir + "/val-000.shard", val_tokens, uint64_t{1} << 40);
}

}  // namespace mot::data
