#include "mot/cli/commands.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"

namespace mot::cli {

void register_init(CLI::App& app, Action& action) {
  struct Opts { std::string config, out; int64_t seed = 1; std::vector<std::string> set; };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("init", "Write a freshly initialised model");
  sub->add_option("--config", o->config, "model config (TOML with a [model] table)")->required();
  sub->add_option("--seed", o->seed, "initialisation seed");
  sub->add_option("--out", o->out, "output .safetensors file")->required();
  sub->add_option("--set", o->set, "override a config key: table.key=value (repeatable)");
  sub->callback([o, &action] {
    action = [o] {
      RunConfig rc = load_run_config(o->config, o->set);
      Model model(rc.model, 1, 2, false);
      init_params(rc.model, model.table(), model.params(), static_cast<uint64_t>(o->seed));
      save_model(o->out, model);
      std::printf("wrote %s (%zu parameters)\n", o->out.c_str(), model.table().total);
      return 0;
    };
  });
}

}  // namespace mot::cli
