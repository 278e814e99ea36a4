// `mot bench`: training-step throughput of a model built from flags, on generated
// tokens laid out in modality spans like real interleaved data.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mot/model/config.hpp"

namespace mot::bench {

struct BenchOptions {
  std::string arch = "dense";  // dense | mot
  int modalities = 2;          // 1, 2 or 3
  std::string dtype = "fp32";  // fp32 | bf16
  int64_t vocab = 8192, dim = 512, layers = 8, heads = 8, ffn_hidden = 1408, seq = 512, batch = 8;
  int64_t warmup = 2, steps = 5;
  bool qk_norm = false;
  bool profile = false;  // per-kernel time breakdown (JSON "profile")
  int threads = 0;
  std::string device = "cpu";  // cpu | cuda
};

// Span layout of one sequence, repeated/truncated to the sequence length:
//   1 modality: text; 2: text 64 / image 256 / text 64 / image 128;
//   3: text 64 / image 256 / speech 128 / text 64.
// Returns the measurements as JSON: tokens_per_s, step_s, fwd_s, head_s, bwd_s,
// opt_s, gflops, flops_per_step, sgemm_gflops, fraction_of_sgemm, peak_rss_mib,
// page_faults_per_step, blas, threads, params, device, ...; on a GPU also mfu (the
// same FLOPs against the H100/H200's 989.4 TFLOP/s dense bf16 peak, PaLM's convention).
nlohmann::json run_step_bench(const BenchOptions& o);

// The benchmark model: `modalities` equal vocabulary ranges (text, image, speech), MoT
// untying attention, FFN and norms. mot::Error if the config is invalid.
ModelConfig bench_model(const std::string& arch, int modalities, int64_t vocab, int64_t dim, int64_t layers,
                        int64_t heads, int64_t ffn_hidden, int64_t max_seq_len, bool qk_norm = false);

}  // namespace mot::bench
