// `mot compare` end to end (and `mot demo`, which is a comparison of dense and MoT on
// the built-in corpus): resolve the variants, claim the output directory, train every
// variant for every seed with identical data, data order, batch and schedule, then
// write the report and plots.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mot::compare {

struct CompareOptions {
  std::string config;                  // base config
  std::string data;                    // data every variant trains on ("" = the config's [data] path)
  std::string out;                     // DIR: compare.json, configs/, seed-<s>/<variant>/, report
  std::vector<std::string> variants;   // names (see variant_help())
  std::vector<std::string> overrides;  // --set key=value, applied to the base config
  int64_t steps = 0;                   // 0: the config's train.steps
  int seeds = 2;                       // seeds 1..seeds
  int parallel = 2;                    // runs trained at once; cores are split between them
  bool fresh = false;                  // discard an earlier comparison in DIR
  int64_t evalgen_scenes = 100;        // held-out scenes `mot evalgen` scores per run (0: none; built-in corpus only)
  std::string who = "compare";         // prefix of progress lines
  std::string title;                   // report title ("" = made from the variants)
  std::string notes;                   // markdown added after the generated set-up
  std::string command;                 // reproduce line ("" = the mot compare command)
};

// Returns the exit status: 0 when the report is written, 130 when interrupted (runs
// saved; the same command resumes). Bad input is mot::Error.
int run_compare(const CompareOptions& o);

}  // namespace mot::compare
