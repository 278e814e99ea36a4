// `mot data synth-tokens`: learnable token shards for a config's modalities.
// Registered under `mot data`.
#include <cstdio>
#include <memory>

#include "mot/cli/commands.hpp"
#include "mot/data/synth/synth_tokens.hpp"
#include "mot/model/config.hpp"

namespace mot::cli {

void register_data_synth_tokens(CLI::App& data, Action& action) {
  struct SynthOpts { std::string config, out; int64_t tokens = 1'000'000, val_tokens = 50'000; uint64_t seed = 1; };
  auto so = std::make_shared<SynthOpts>();
  auto* synth = data.add_subcommand("synth-tokens", "Generate learnable token shards for a config's modalities");
  synth->add_option("--config", so->config, "config TOML (its [model] modalities)")->required();
  synth->add_option("--out", so->out, "output directory")->required();
  synth->add_option("--tokens", so->tokens, "training tokens")->check(positive_int());
  synth->add_option("--val-tokens", so->val_tokens, "validation tokens")->check(positive_int());
  synth->add_option("--seed", so->seed, "seed");
  synth->callback([so, &action] {
    action = [so] {
      RunConfig rc = load_run_config(so->config, {});
      data::write_synth_shards(rc.model, so->out, so->tokens, so->val_tokens, so->seed);
      std::printf("wrote %s/train-000.shard and %s/val-000.shard\n", so->out.c_str(), so->out.c_str());
      return 0;
    };
  });
}

}  // namespace mot::cli
