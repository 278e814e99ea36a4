#include "mot/data/format/token_batch.hpp"
#include "mot/bench/step_bench.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "mot/backend/cpu/gemm.hpp"
#include "mot/backend/cpu/matmul.hpp"
#include "mot/bench/timing.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/core/profile.hpp"
#include "mot/core/rng.hpp"
#include "mot/model/memory.hpp"
#include "mot/model/model.hpp"
#include "mot/train/optimizer.hpp"

namespace mot::bench {

namespace {

// GFLOP/s of one large fp32 GEMM through the same path the model uses: the ceiling
// the model's matmuls could reach on this machine right now.
double sgemm_ceiling() {
  const int64_t n = 1024;
  std::vector<float> a(n * n), b(n * n), c(n * n);
  Rng rng(1);
  for (auto& x : a) x = static_cast<float>(rng.uniform() - 0.5);
  for (auto& x : b) x = static_cast<float>(rng.uniform() - 0.5);
  cpu::gemm_nt(n, n, n, a.data(), n, b.data(), n, c.data(), n, 0.0f);
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = clock::now();
    cpu::gemm_nt(n, n, n, a.data(), n, b.data(), n, c.data(), n, 0.0f);
    t.push_back(since(t0));
  }
  return 2.0 * n * n * n / median(t) / 1e9;
}

struct Usage {
  double rss_mib;
  long minflt;
};
Usage usage() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return {u.ru_maxrss / 1024.0, u.ru_minflt + u.ru_majflt};
}

}  // namespace

ModelConfig bench_model(const std::string& arch, int modalities, int64_t vocab, int64_t dim, int64_t layers,
                        int64_t heads, int64_t ffn_hidden, int64_t max_seq_len, bool qk_norm) {
  ModelConfig c;
  c.arch = arch;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = heads;
  c.ffn_hidden = ffn_hidden;
  c.vocab_size = vocab;
  c.max_seq_len = max_seq_len;
  c.qk_norm = qk_norm;
  const char* names[] = {"text", "image", "speech"};
  const int64_t per = vocab / modalities;
  for (int m = 0; m < modalities; ++m)
    c.modalities.push_back({names[m], m * per, m + 1 == modalities ? vocab : (m + 1) * per});
  if (arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  c.validate("bench");
  return c;
}

nlohmann::json run_step_bench(const BenchOptions& o) {
  if (o.arch != "dense" && o.arch != "mot") fail("--arch must be dense or mot (got '", o.arch, "')");
  if (o.modalities < 1 || o.modalities > 3) fail("--modalities must be 1, 2 or 3 (got ", o.modalities, ")");
  if (o.dtype != "fp32" && o.dtype != "bf16") fail("--dtype must be fp32 or bf16 (got '", o.dtype, "')");
  if (o.vocab < o.modalities * 2) fail("--vocab ", o.vocab, " is too small for ", o.modalities, " modalities");
  for (auto [name, v] : {std::pair{"--dim", o.dim}, {"--layers", o.layers}, {"--heads", o.heads},
                         {"--ffn-hidden", o.ffn_hidden}, {"--seq", o.seq}, {"--batch", o.batch}, {"--steps", o.steps}})
    if (v <= 0) fail(name, " must be positive (got ", v, ")");
  if (o.warmup < 0) fail("--warmup must be >= 0");
  if (o.threads < 0 || o.threads > 4096) fail("--threads must be in [0, 4096] (got ", o.threads, ")");
  set_threads(o.threads);

  const ModelConfig c = bench_model(o.arch, o.modalities, o.vocab, o.dim, o.layers, o.heads, o.ffn_hidden, o.seq,
                                    o.qk_norm);
  // Before the token batch below: refuse an absurd size while nothing is allocated.
  ensure_model_fits(c, o.batch, o.seq + 1, true, parse_precision(o.dtype, "--dtype"));

  // Tokens: spans per the layout, ids uniform inside each modality's range.
  std::vector<std::pair<int, int64_t>> layout;
  if (o.modalities == 1) layout = {{0, o.seq}};
  else if (o.modalities == 2) layout = {{0, 64}, {1, 256}, {0, 64}, {1, 128}};
  else layout = {{0, 64}, {1, 256}, {2, 128}, {0, 64}};
  TokenBatch batch;
  batch.rows = o.batch;
  batch.len = o.seq + 1;
  batch.tokens.resize(batch.rows * batch.len);
  Rng rng(7);
  for (int64_t r = 0; r < batch.rows; ++r) {
    int64_t t = 0;
    while (t < batch.len)
      for (auto [m, n] : layout)
        for (int64_t i = 0; i < n && t < batch.len; ++i, ++t)
          batch.tokens[r * batch.len + t] = static_cast<int32_t>(
              c.modalities[m].begin + static_cast<int64_t>(rng.below(c.modalities[m].end - c.modalities[m].begin)));
  }

  const auto t_alloc = clock::now();
  const Device device = parse_device(o.device, "--device");
  Model model(c, o.batch, o.seq + 1, true, parse_precision(o.dtype, "--dtype"), device);
  init_params(c, model.table(), model.params(), 1);
  const double alloc_s = since(t_alloc);
  TrainConfig tc;
  tc.steps = o.warmup + o.steps;
  tc.warmup_steps = 1;
  const int64_t P = static_cast<int64_t>(model.table().total);
  const float scale = 1.0f / static_cast<float>(o.batch * o.seq);
  LossSums sums;
  std::vector<double> step_t, fwd_t, head_t, bwd_t, opt_t;
  long faults_before = 0;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    if (s == o.warmup) {
      faults_before = usage().minflt;
      prof::g_totals = prof::Totals{};
      prof::g_enabled = o.profile;
    }
    const auto t0 = clock::now();
    model.times() = StepTimes{};
    model.backend().zero(model.grads(), P);
    sums.reset(c.n_modalities());
    model.run(batch, true, scale, sums);
    const auto t1 = clock::now();
    clip_gradients(model, 1.0);
    adamw_step(model, tc, lr_at(tc, s), s + 1);
    const double opt = since(t1), total = since(t0);
    if (s < o.warmup) continue;
    step_t.push_back(total);
    fwd_t.push_back(model.times().forward);
    head_t.push_back(model.times().head);
    // zeroing the gradients counts with the backward pass
    bwd_t.push_back(total - opt - model.times().forward - model.times().head);
    opt_t.push_back(opt);
  }
  prof::g_enabled = false;
  const double faults = static_cast<double>(usage().minflt - faults_before) / static_cast<double>(o.steps);
  const double tokens = static_cast<double>(o.batch * o.seq);
  const int64_t d = o.dim, F = o.ffn_hidden, L = o.layers;
  const double n_active = static_cast<double>(L * (4 * d * d + 3 * d * F) + o.vocab * d);
  const double flops = 6.0 * n_active * tokens + 12.0 * L * d * static_cast<double>(o.seq) * o.seq * o.batch;
  const double step = median(step_t);
  const bool gpu = device != Device::cpu;
  const double ceiling = gpu ? 0.0 : sgemm_ceiling();  // a CPU figure: meaningless beside a GPU step
  const double gflops = flops / step / 1e9;
  nlohmann::json j = {{"arch", o.arch},
                      {"modalities", o.modalities},
                      {"dtype", o.dtype},
                      {"params", P},
                      {"tokens_per_step", tokens},
                      {"tokens_per_s", tokens / step},
                      {"step_s", step},
                      {"fwd_s", median(fwd_t)},
                      {"head_s", median(head_t)},
                      {"bwd_s", median(bwd_t)},
                      {"opt_s", median(opt_t)},
                      {"flops_per_step", flops},
                      {"flops_formula", "6*N_active*tokens + 12*L*d*T^2*B"},
                      {"gflops", gflops},
                      {"sgemm_gflops", ceiling},
                      {"fraction_of_sgemm", gpu ? 0.0 : gflops / ceiling},
                      {"device", device_description(device)},
                      {"peak_rss_mib", usage().rss_mib},
                      {"page_faults_per_step", faults},
                      {"arena_mib", model.arena_bytes() / 1048576.0},
                      {"setup_s", alloc_s},
                      {"threads", thread_count()},
                      {"blas", blas_core_name()},
                      {"loss", sums.targets ? sums.loss / sums.targets : 0.0}};
  if (gpu) j["mfu"] = gflops * 1e9 / 989.4e12;
  if (o.profile) {
    // Per step (means over the measured steps); "other" is the rest of the step:
    // routing, embedding, gathers into heads, RoPE, residual adds, zeroing gradients.
    nlohmann::json k = nlohmann::json::object();
    double timed = 0;
    const double n = static_cast<double>(o.steps);
    for (int s = 0; s < prof::kSlots; ++s) {
      const auto slot = static_cast<prof::Slot>(s);
      const double sec = prof::g_totals.seconds[s] / n;
      timed += sec;
      nlohmann::json e = {{"s", sec}, {"calls", static_cast<double>(prof::g_totals.calls[s]) / n}};
      if (prof::g_totals.flops[s] > 0) e["gflops"] = prof::g_totals.flops[s] / n / sec / 1e9;
      k[prof::slot_name(slot)] = e;
    }
    double mean_step = 0;
    for (double t : step_t) mean_step += t / n;
    k["other"] = {{"s", std::max(0.0, mean_step - timed)}};
    j["profile"] = k;
    j["profile_step_s"] = mean_step;
  }
  return j;
}

}  // namespace mot::bench
