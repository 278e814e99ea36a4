// One file per subcommand; each registers its options on the app and sets `action`
// to run once parsing succeeded.
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace mot::cli {

using Action = std::function<int()>;

void register_init(CLI::App& app, Action& action);
void register_eval(CLI::App& app, Action& action);
void register_grad(CLI::App& app, Action& action);
void register_train(CLI::App& app, Action& action);
void register_info(CLI::App& app, Action& action);
void register_data(CLI::App& app, Action& action);
void register_demo(CLI::App& app, Action& action);
void register_compare(CLI::App& app, Action& action);
void register_bench(CLI::App& app, Action& action);

}  // namespace mot::cli
