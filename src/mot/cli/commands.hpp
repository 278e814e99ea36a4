// One file per subcommand; each registers its options on the app and sets `action`
// to run once parsing succeeded.
#pragma once
#include <charconv>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include <CLI/CLI.hpp>

namespace mot::cli {

using Action = std::function<int()>;

// Integer flag checks with a short message ("--steps: must be a positive integer (got
// 0)"); CLI11's own PositiveNumber/NonNegativeNumber quote the double range (a 309-digit
// number) and let a value beyond int64 through. The value must be a whole decimal
// integer in [lo, hi].
inline CLI::Validator int_in(int64_t lo, int64_t hi, const std::string& what) {
  return CLI::Validator(
      [lo, hi, what](std::string& s) -> std::string {
        int64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [p, ec] = std::from_chars(s.data(), end, v);
        if (ec != std::errc() || p != end || v < lo || v > hi) return "must be " + what + " (got " + s + ")";
        return {};
      },
      "INT");
}
inline CLI::Validator positive_int() {
  return int_in(1, std::numeric_limits<int64_t>::max(), "a positive integer");
}
inline CLI::Validator non_negative_int() {
  return int_in(0, std::numeric_limits<int64_t>::max(), "an integer >= 0");
}
inline CLI::Validator int_range(int64_t lo, int64_t hi) {
  return int_in(lo, hi, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
}

void register_init(CLI::App& app, Action& action);
void register_eval(CLI::App& app, Action& action);
void register_grad(CLI::App& app, Action& action);
void register_train(CLI::App& app, Action& action);
void register_info(CLI::App& app, Action& action);
void register_data(CLI::App& app, Action& action);
// The subcommands of `mot data` (cmd_data_*.cpp), registered on the group by register_data.
void register_data_synth(CLI::App& data, Action& action);
void register_data_show(CLI::App& data, Action& action);
void register_data_synth_tokens(CLI::App& data, Action& action);
void register_data_pack(CLI::App& data, Action& action);
void register_data_inspect(CLI::App& data, Action& action);
void register_data_prepare(CLI::App& data, Action& action);
void register_demo(CLI::App& app, Action& action);
void register_compare(CLI::App& app, Action& action);
void register_bench(CLI::App& app, Action& action);
void register_generate(CLI::App& app, Action& action);
void register_evalgen(CLI::App& app, Action& action);

}  // namespace mot::cli
