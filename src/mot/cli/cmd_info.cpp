#include <nlohmann/json.hpp>

#include "mot/cli/commands.hpp"
#include "mot/core/error.hpp"
#include "mot/core/units.hpp"
#include "mot/model/flops.hpp"
#include "mot/train/checkpoint.hpp"

namespace mot::cli {

namespace {
std::string human(double v) { return format_count(v, 2); }
}  // namespace

void register_info(CLI::App& app, Action& action) {
  struct Opts { std::string config, model; std::vector<std::string> set; int64_t seq_len = 0; bool json = false; };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("info", "Parameter counts (total, active per token) and FLOPs per token");
  auto* c = sub->add_option("--config", o->config, "config TOML");
  auto* m = sub->add_option("--model", o->model, "model .safetensors");
  c->excludes(m);
  sub->add_option("--set", o->set, "override a config key: table.key=value")->needs(c);
  sub->add_option("--seq-len", o->seq_len, "sequence length for the attention term (default: train.seq_len or max_seq_len)")
      ->check(positive_int());
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->callback([o, &action] {
    action = [o] {
      ModelConfig mc;
      int64_t T = o->seq_len;
      if (!o->config.empty()) {
        RunConfig rc = load_run_config(o->config, o->set);
        mc = rc.model;
        if (!T) T = rc.train.seq_len;
      } else if (!o->model.empty()) {
        mc = read_model_config(o->model);
        if (!T) T = mc.max_seq_len;
      } else {
        fail("info needs --config C.toml or --model M.safetensors");
      }
      const ModelCounts k = count_model(mc, T);
      if (o->json) {
        nlohmann::json j = {{"arch", mc.arch},
                            {"params_total", k.params_total},
                            {"params_embedding", k.params_embedding},
                            {"params_active_per_token", k.params_active},
                            {"matmul_params_active", k.matmul_active},
                            {"seq_len", T},
                            {"flops_per_token_forward", k.flops_fwd},
                            {"flops_per_token_forward_matmul", k.flops_fwd_matmul},
                            {"flops_per_token_forward_attention", k.flops_fwd_attention},
                            {"flops_per_token_train", k.flops_train}};
        if (mc.has_moe()) j["n_experts"] = mc.n_experts;
        if (!mc.moe_modalities.empty()) j["moe_modalities"] = mc.moe_modalities;
        std::printf("%s\n", j.dump().c_str());
        return 0;
      }
      std::printf("arch %s: d %lld, %lld layers, %lld heads, ffn %lld, vocab %lld, %d modalities\n", mc.arch.c_str(),
                  (long long)mc.dim, (long long)mc.n_layers, (long long)mc.n_heads, (long long)mc.ffn_hidden,
                  (long long)mc.vocab_size, mc.n_modalities());
      if (mc.has_moe()) {
        std::string which = "every modality";
        if (!mc.moe_modalities.empty()) {
          which.clear();
          for (const auto& m : mc.moe_modalities) which += (which.empty() ? "" : ", ") + m;
        }
        std::printf("MoE FFN (%s): %lld experts, expert choice at capacity 1 (one expert per token on average)\n",
                    which.c_str(), (long long)mc.n_experts);
      }
      std::printf("parameters:        %s total (%lld), of which embedding %s\n", human(k.params_total).c_str(),
                  (long long)k.params_total, human(k.params_embedding).c_str());
      std::printf("active per token:  %s (its modality's weights%s + output head + its embedding row)\n",
                  human(k.params_active).c_str(), mc.has_moe() ? ", one expert's FFN and the router" : "");
      std::printf("FLOPs per token at seq %lld: forward %s (matmul 2*N_active = %s, attention 4*d*T_avg*L = %s), "
                  "training step %s\n",
                  (long long)T, human(k.flops_fwd).c_str(), human(k.flops_fwd_matmul).c_str(),
                  human(k.flops_fwd_attention).c_str(), human(k.flops_train).c_str());
      return 0;
    };
  });
}

}  // namespace mot::cli
