// libFuzzer target: the JSONL data reader (token rows, and Transfusion rows with
// explicit images, SPEC 2b) must reject hostile text with mot::Error only, and what it
// accepts must satisfy what the batcher relies on: ids in the vocabulary or -2 in runs
// of exactly one image's patches, followed by a token; latent_dim finite values per -2
// entry; noise beside them; τ in range or -1.
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"

namespace {
mot::ModelConfig model() {
  mot::ModelConfig c;
  c.arch = "mot";
  c.dim = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.ffn_hidden = 8;
  c.vocab_size = 40;
  c.bos_id = 1;
  c.diffusion_steps = 50;
  mot::Modality image;
  image.name = "image";
  image.continuous = true;
  image.patch = 2;
  image.channels = 3;
  image.image_size = 4;  // 4 patches of 12 values
  c.modalities = {mot::Modality{"text", 0, 40}, image};
  c.untie[0] = c.untie[1] = c.untie[2] = true;
  c.validate("fuzz");
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mot::ModelConfig c = model();
  const bool images = size > 0 && (data[0] & 1);
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    const auto rows = mot::data::parse_jsonl_stream(in, "fuzz.jsonl", c.vocab_size, images ? &c : nullptr);
    for (const auto& r : rows) {
      int64_t entries = 0, spans = 0;
      for (size_t t = 0; t < r.tokens.size(); ++t) {
        const int32_t v = r.tokens[t];
        if (v == mot::kContinuousEntry) {
          if (!images) __builtin_trap();
          ++entries;
          if (t == 0 || r.tokens[t - 1] != mot::kContinuousEntry) {
            ++spans;
            size_t e = t;
            while (e < r.tokens.size() && r.tokens[e] == mot::kContinuousEntry) ++e;
            if (e - t != 4 || e == r.tokens.size() || r.tokens[e] < 0) __builtin_trap();
          }
        } else if (v != -1 && (v < 0 || v >= c.vocab_size)) {
          __builtin_trap();
        }
      }
      if (static_cast<int64_t>(r.latents.size()) != entries * 12 || r.noise.size() != r.latents.size() ||
          static_cast<int64_t>(r.span_t.size()) != spans)
        __builtin_trap();
      for (float x : r.latents)
        if (!std::isfinite(x)) __builtin_trap();
      for (float x : r.noise)
        if (!std::isfinite(x)) __builtin_trap();
      for (int32_t tau : r.span_t)
        if (tau < -1 || tau >= c.diffusion_steps) __builtin_trap();
    }
  } catch (const mot::Error&) {
  }
  return 0;
}
