// mot: train, evaluate and inspect Mixture-of-Transformers models.
#include <csignal>
#include <cstdio>
#include <new>
#include <string>

#include "mot/cli/commands.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  mot::ensure_fast_blas(argc, argv);
  // A file-size limit (or quota) must become a clean write error, not a kill.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"mot: a Mixture-of-Transformers training engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mot 0.1.0 (checkpoint format_version 1)");
  mot::cli::Action action;
  mot::cli::register_init(app, action);
  mot::cli::register_eval(app, action);
  mot::cli::register_grad(app, action);
  mot::cli::register_train(app, action);
  mot::cli::register_info(app, action);
  mot::cli::register_data(app, action);
  mot::cli::register_demo(app, action);
  mot::cli::register_compare(app, action);
  mot::cli::register_bench(app, action);
  mot::cli::register_generate(app, action);
  mot::cli::register_evalgen(app, action);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) known = known || sub->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr, "mot: error: unknown command '%s' (see mot --help)\n", argv[1]);
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string where = app.get_subcommands().empty() ? "mot --help" : "mot " + app.get_subcommands()[0]->get_name() + " --help";
    std::fprintf(stderr, "mot: error: %s (see %s)\n", one_line(e.what()).c_str(), where.c_str());
    return 2;
  }
  try {
    return action ? action() : 2;
  } catch (const mot::Error& e) {
    std::fprintf(stderr, "mot: error: %s\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "mot: error: out of memory\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mot: internal error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
}
