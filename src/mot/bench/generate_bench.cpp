#include "mot/bench/generate_bench.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "mot/bench/step_bench.hpp"
#include "mot/bench/timing.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/model/memory.hpp"
#include "mot/model/model.hpp"

namespace mot::bench {

namespace {

// Row b's positions [p0, p1) of `seq` into `batch` (keys before p0 are cached).
void fill(const ModelConfig& c, const std::vector<std::vector<int32_t>>& seq, int64_t p0, int64_t p1, Batch& batch) {
  const int64_t B = static_cast<int64_t>(seq.size());
  batch.resize(B, p1 - p0);
  batch.past.assign(static_cast<size_t>(B), static_cast<int32_t>(p0));
  for (int64_t b = 0; b < B; ++b) {
    batch.row_len[b] = static_cast<int32_t>(p1 - p0);
    for (int64_t t = p0; t < p1; ++t) {
      const int64_t i = batch.at(b, t - p0);
      batch.token[i] = seq[b][t];
      batch.modality[i] = c.modality_of_token(seq[b][t]);
      batch.pos[i] = static_cast<int32_t>(t);
      batch.kv_lo[i] = 0;
      batch.kv_hi[i] = static_cast<int32_t>(t + 1);
    }
  }
}

}  // namespace

nlohmann::json run_generate_bench(const GenerateBenchOptions& o) {
  if (o.arch != "dense" && o.arch != "mot") fail("--arch must be dense or mot (got '", o.arch, "')");
  if (o.modalities < 1 || o.modalities > 3) fail("--modalities must be 1, 2 or 3 (got ", o.modalities, ")");
  if (o.prompt < 1 || o.new_tokens < 1) fail("--prompt and --new-tokens must be positive");
  if (o.batches.empty()) fail("--gen-batch: give at least one batch size");
  set_threads(o.threads);
  const ModelConfig c =
      bench_model(o.arch, o.modalities, o.vocab, o.dim, o.layers, o.heads, o.ffn_hidden, o.prompt + o.new_tokens);
  const Precision prec = parse_precision(o.dtype, "--dtype");
  const int64_t cap = o.prompt + o.new_tokens, H = c.n_heads, hd = c.head_dim(), V = c.vocab_size;

  nlohmann::json results = nlohmann::json::array();
  int64_t params = 0;
  for (int64_t B : o.batches) {
    if (B < 1) fail("--gen-batch sizes must be positive");
    ensure_model_fits(c, B, cap + 1, false, prec);
    Model model(c, B, cap + 1, false, prec);
    init_params(c, model.table(), model.params(), 1);
    model.set_batch_invariant(true);  // as mot generate decodes
    params = static_cast<int64_t>(model.table().total);
    std::vector<std::vector<float>> kv(2 * c.n_layers, std::vector<float>(static_cast<size_t>(B * H * cap * hd)));
    KvCache cache;
    cache.rows = B;
    cache.capacity = cap;
    for (int l = 0; l < c.n_layers; ++l) cache.k.push_back(kv[2 * l].data()), cache.v.push_back(kv[2 * l + 1].data());
    model.attach_kv_cache(&cache);
    // Prompts: a text span, then the other modalities' spans, as interleaved data has them.
    Rng rng(7);
    std::vector<std::vector<int32_t>> seq(static_cast<size_t>(B));
    for (auto& s : seq) {
      for (int64_t t = 0; t < o.prompt; ++t) {
        const int m = static_cast<int>((t * o.modalities) / o.prompt);
        const auto& r = c.modalities[m];
        s.push_back(static_cast<int32_t>(r.begin + static_cast<int64_t>(rng.below(r.end - r.begin))));
      }
      s.resize(static_cast<size_t>(cap));
    }
    const int64_t text_end = c.modalities[0].end;
    std::vector<float> logits(static_cast<size_t>(B * V));
    Batch batch;
    batch.reserve(B, o.prompt);
    std::vector<double> pre_t, dec_t;
    for (int r = 0; r <= o.repeats; ++r) {  // r = 0: warm-up
      auto t0 = clock::now();
      fill(c, seq, 0, o.prompt, batch);
      model.last_logits(batch, logits.data());
      const double pre = since(t0);
      t0 = clock::now();
      for (int64_t t = o.prompt; t < cap; ++t) {
        for (int64_t b = 0; b < B; ++b) {  // greedy over the text tokens
          const float* z = logits.data() + b * V;
          seq[b][t] = static_cast<int32_t>(std::max_element(z, z + text_end) - z);
        }
        if (t + 1 == cap) break;
        fill(c, seq, t, t + 1, batch);
        model.last_logits(batch, logits.data());
      }
      const double dec = since(t0);
      if (r > 0) pre_t.push_back(pre), dec_t.push_back(dec);
    }
    const double pre = median(pre_t), dec = median(dec_t);
    results.push_back({{"batch", B}, {"prefill_s", pre}, {"decode_s", dec},
                       {"prefill_tokens_per_s", B * o.prompt / pre},
                       {"decode_tokens_per_s", B * (o.new_tokens - 1) / dec}});
  }
  return {{"params", params}, {"threads", thread_count()}, {"blas", blas_core_name()}, {"arch", o.arch},
          {"dtype", o.dtype}, {"prompt", o.prompt}, {"new_tokens", o.new_tokens}, {"results", results}};
}

}  // namespace mot::bench
