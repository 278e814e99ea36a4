// `mot compare`: trains dense and other variants of one config on identical data and
// schedule for several seeds and reports the paper's step-, FLOPs- and wall-clock-
// matching ratios per modality (src/mot/compare/ does the work).
#include "mot/cli/commands.hpp"
#include "mot/compare/compare.hpp"
#include "mot/compare/variants.hpp"

namespace mot::cli {

void register_compare(CLI::App& app, Action& action) {
  auto o = std::make_shared<compare::CompareOptions>();
  auto* sub = app.add_subcommand(
      "compare", "Train dense, MoT, MoE-4x, hybrid and ablation variants of one config on identical data; report "
                 "step-, FLOPs- and wall-clock-matching ratios per modality");
  sub->add_option("--config", o->config,
                  "base config: [train] and [data] for every variant, [model] for the built-in ones")
      ->required();
  sub->add_option("--data", o->data, "data every variant trains on (default: the config's [data] path)");
  sub->add_option("--variants", o->variants, "comma-separated variant names; dense is required (see below)")
      ->required()
      ->delimiter(',');
  sub->add_option("--out", o->out, "comparison directory: compare.json, runs, report.md and the plots")->required();
  sub->add_option("--steps", o->steps, "training steps per run (default: the config's)")->check(positive_int());
  sub->add_option("--seeds", o->seeds, "runs per variant, seeds 1..K")->check(int_range(1, 100));
  sub->add_option("--parallel", o->parallel, "runs trained at once (the cores are split between them)")
      ->check(int_range(1, 64));
  sub->add_option("--set", o->overrides, "override a base config key: table.key=value (e.g. train.eval_every=50)");
  sub->add_flag("--fresh", o->fresh, "discard an earlier comparison in --out instead of resuming it");
  sub->add_option("--evalgen-scenes", o->evalgen_scenes,
                  "held-out scenes `mot evalgen` scores on each run's final model (built-in corpus; 0: skip)")
      ->check(non_negative_int());
  sub->footer(compare::variant_help() +
              "\nRe-running the same command resumes: finished runs are kept, interrupted ones continue. A --out\n"
              "that holds a different comparison (other variants, seeds, steps, configs or data) is refused.\n");
  sub->callback([o, &action] { action = [o] { return compare::run_compare(*o); }; });
}

}  // namespace mot::cli
