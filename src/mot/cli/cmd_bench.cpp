#include "mot/bench/generate_bench.hpp"
#include "mot/bench/step_bench.hpp"
#include "mot/cli/commands.hpp"
#include "mot/core/error.hpp"

namespace mot::cli {

void register_bench(CLI::App& app, Action& action) {
  auto o = std::make_shared<bench::BenchOptions>();
  auto json = std::make_shared<bool>(false);
  auto gen = std::make_shared<bench::GenerateBenchOptions>();
  auto generate = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand("bench", "Throughput on generated tokens: training steps, or with --generate prefill and decode (medians)");
  sub->add_option("--arch", o->arch, "dense or mot");
  sub->add_option("--modalities", o->modalities, "1, 2 or 3 (span layout per sequence)")->check(int_range(1, 3));
  sub->add_option("--dtype", o->dtype, "fp32 or bf16");
  sub->add_option("--vocab", o->vocab, "vocabulary size")->check(positive_int());
  sub->add_option("--dim", o->dim, "model width d")->check(positive_int());
  sub->add_option("--layers", o->layers, "layers")->check(positive_int());
  sub->add_option("--heads", o->heads, "attention heads")->check(positive_int());
  sub->add_option("--ffn-hidden", o->ffn_hidden, "SwiGLU hidden size")->check(positive_int());
  sub->add_option("--seq", o->seq, "sequence length T")->check(positive_int());
  sub->add_option("--batch", o->batch, "rows per step B")->check(positive_int());
  sub->add_option("--warmup", o->warmup, "unmeasured steps first")->check(non_negative_int());
  sub->add_option("--steps", o->steps, "measured steps")->check(positive_int());
  sub->add_flag("--qk-norm", o->qk_norm, "QK-norm on");
  sub->add_option("--threads", o->threads, "threads (0: all cores)")->check(int_range(0, 4096));
  sub->add_option("--device", o->device, "cpu or cuda (training steps only)")->check(CLI::IsMember({"cpu", "cuda"}));
  sub->add_flag("--profile", o->profile, "time each kernel class (GEMMs by kind, attention, norms, ...) per step");
  sub->add_flag("--json", *json, "print one JSON object");
  sub->add_flag("--generate", *generate,
                "generation instead of training: prefill and decode tokens/s with the KV cache (greedy)");
  sub->add_option("--prompt", gen->prompt, "--generate: prompt positions per row")->check(positive_int());
  sub->add_option("--new-tokens", gen->new_tokens, "--generate: tokens generated per row")->check(int_range(2, 1 << 20));
  sub->add_option("--gen-batch", gen->batches, "--generate: batch sizes (rows decoded at once), e.g. 1,16")
      ->delimiter(',')
      ->check(positive_int());
  sub->callback([o, json, gen, generate, &action] {
    action = [o, json, gen, generate] {
      if (*generate) {
        if (o->device != "cpu") fail("--generate runs on the CPU only so far (drop --device)");
        gen->arch = o->arch;
        gen->modalities = o->modalities;
        gen->dtype = o->dtype;
        gen->vocab = o->vocab;
        gen->dim = o->dim;
        gen->layers = o->layers;
        gen->heads = o->heads;
        gen->ffn_hidden = o->ffn_hidden;
        gen->threads = o->threads;
        const auto j = bench::run_generate_bench(*gen);
        if (*json) {
          std::printf("%s\n", j.dump().c_str());
          return 0;
        }
        std::printf("%s, %d modalities, %s: %lld params, prompt %lld + %lld new tokens, %d threads, BLAS %s\n",
                    o->arch.c_str(), o->modalities, o->dtype.c_str(), (long long)j["params"].get<int64_t>(),
                    (long long)gen->prompt, (long long)gen->new_tokens, j["threads"].get<int>(),
                    j["blas"].get<std::string>().c_str());
        for (const auto& r : j["results"])
          std::printf("batch %3lld: prefill %8.0f tokens/s (%.1f ms) | decode %8.1f tokens/s (%.2f ms per step)\n",
                      (long long)r["batch"].get<int64_t>(), r["prefill_tokens_per_s"].get<double>(),
                      1e3 * r["prefill_s"].get<double>(), r["decode_tokens_per_s"].get<double>(),
                      1e3 * r["decode_s"].get<double>() / (gen->new_tokens - 1));
        return 0;
      }
      const auto j = bench::run_step_bench(*o);
      if (*json) {
        std::printf("%s\n", j.dump().c_str());
        return 0;
      }
      std::printf("%s, %d modalities, %s: %lld params, B %lld x T %lld, %d threads, BLAS %s\n", o->arch.c_str(),
                  o->modalities, o->dtype.c_str(), (long long)j["params"].get<int64_t>(), (long long)o->batch,
                  (long long)o->seq, j["threads"].get<int>(), j["blas"].get<std::string>().c_str());
      std::printf("step %.1f ms (forward %.1f, head %.1f, backward %.1f, optimizer %.1f) | %.0f tokens/s\n",
                  1e3 * j["step_s"].get<double>(), 1e3 * j["fwd_s"].get<double>(), 1e3 * j["head_s"].get<double>(),
                  1e3 * j["bwd_s"].get<double>(), 1e3 * j["opt_s"].get<double>(), j["tokens_per_s"].get<double>());
      if (j.contains("mfu")) {
        std::printf("%s: model %.1f TFLOP/s = %.1f%% MFU (of 989.4 TFLOP/s bf16)\n",
                    j["device"].get<std::string>().c_str(), j["gflops"].get<double>() / 1e3,
                    100 * j["mfu"].get<double>());
      } else {
        std::printf("model %.1f GFLOP/s (FLOPs = 6*N_active*tokens + 12*L*d*T^2*B) = %.0f%% of sgemm's %.1f GFLOP/s "
                    "measured now\n",
                    j["gflops"].get<double>(), 100 * j["fraction_of_sgemm"].get<double>(), j["sgemm_gflops"].get<double>());
      }
      std::printf("peak RSS %.0f MiB (arena %.0f MiB), %.1f page faults per step\n", j["peak_rss_mib"].get<double>(),
                  j["arena_mib"].get<double>(), j["page_faults_per_step"].get<double>());
      if (j.contains("profile")) {
        const double step = j["profile_step_s"].get<double>();
        std::printf("per step (mean of measured steps, %.1f ms):\n", 1e3 * step);
        for (const auto& [name, e] : j["profile"].items()) {
          std::printf("  %-20s %8.1f ms %5.1f%%", name.c_str(), 1e3 * e["s"].get<double>(),
                      100 * e["s"].get<double>() / step);
          if (e.contains("calls")) std::printf("  %6.0f calls", e["calls"].get<double>());
          if (e.contains("gflops")) std::printf("  %6.1f GFLOP/s", e["gflops"].get<double>());
          std::printf("\n");
        }
      }
      return 0;
    };
  });
}

}  // namespace mot::cli
