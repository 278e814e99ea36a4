#include "mot/cli/commands.hpp"
#include "mot/train/trainer.hpp"

namespace mot::cli {

void register_train(CLI::App& app, Action& action) {
  auto o = std::make_shared<TrainOptions>();
  auto* sub = app.add_subcommand("train", "Train a model; writes RUN/metrics.jsonl, RUN/model.safetensors, state");
  sub->add_option("--config", o->config_path, "run config (TOML: [model], [train], [data])");
  sub->add_option("--data", o->data, "data: a shard directory or a .jsonl file (overrides [data] path)");
  sub->add_option("--steps", o->steps, "total optimizer steps (overrides train.steps)")->check(positive_int());
  sub->add_option("--out", o->out_dir, "run directory")->required();
  sub->add_flag("--resume", o->resume, "continue the run in --out where it stopped");
  sub->add_option("--set", o->overrides, "override a config key: table.key=value (repeatable)");
  sub->add_option("--init", o->init_path, "start from the weights of this model file");
  auto device = std::make_shared<std::string>("cpu");
  sub->add_option("--device", *device, "where to train: cpu, or cuda (a build with -DMOT_CUDA=ON)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  sub->add_option("--stop-at", o->stop_at, "save and stop after this step (resume later)")->check(positive_int());
  sub->add_option("--comm-timeout", o->comm_timeout,
                  "data-parallel runs (mpirun/srun): seconds a rank waits for the others before the job ends "
                  "with an error (default 300)")
      ->check(CLI::PositiveNumber);
  sub->callback([o, device, &action] {
    action = [o, device] {
      o->device = parse_device(*device, "--device");
      return run_training(*o);
    };
  });
}

}  // namespace mot::cli
