// `mot data`: the group; each subcommand registers itself from its own cmd_data_*.cpp.
#include "mot/cli/commands.hpp"

namespace mot::cli {

void register_data(CLI::App& app, Action& action) {
  auto* data = app.add_subcommand("data", "Make and inspect training data");
  data->require_subcommand(1);
  register_data_synth(*data, action);
  register_data_show(*data, action);
  register_data_synth_tokens(*data, action);
  register_data_pack(*data, action);
  register_data_inspect(*data, action);
  register_data_prepare(*data, action);
}

}  // namespace mot::cli
