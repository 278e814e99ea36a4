// `mot bench --generate`: generation throughput of the benchmark model (the model of
// `mot bench`, random weights): prefill tokens/s (one forward over every row's prompt,
// filling the KV cache) and decode tokens/s (one new position per row per step against
// the cache, greedy), at each batch size asked for. Sampling is excluded (it is not
// the model); the PyTorch peer (bench/torch_generate.py) is timed the same way.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mot::bench {

struct GenerateBenchOptions {
  std::string arch = "dense";  // dense | mot
  int modalities = 2;
  std::string dtype = "fp32";
  int64_t vocab = 8192, dim = 512, layers = 8, heads = 8, ffn_hidden = 1408;
  int64_t prompt = 128, new_tokens = 128;
  std::vector<int64_t> batches = {1, 16};
  int repeats = 3;  // median of this many timed runs per batch size, after one warm-up
  int threads = 0;
};

// {"params", "threads", "blas", "results": [{"batch", "prefill_tokens_per_s",
// "decode_tokens_per_s", "prefill_s", "decode_s"}...]}
nlohmann::json run_generate_bench(const GenerateBenchOptions& o);

}  // namespace mot::bench
