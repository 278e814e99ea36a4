#include <algorithm>
#include <filesystem>

#include "mot/cli/commands.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"
#include "mot/train/evaluate.hpp"

namespace mot::cli {

// Opens what `eval` reads: a .jsonl file, or a shard directory (its val shards if it
// has any, else its training shards), as consecutive windows.
std::unique_ptr<data::RowSource> open_eval_source(const std::string& path, const ModelConfig& c, int64_t seq_len) {
  using data::Use;
  if (std::filesystem::is_directory(path)) {
    auto src = data::open_source(path, c, seq_len, "val", false, 0, Use::Evaluate);
    return src ? std::move(src) : data::open_source(path, c, seq_len, "train", false, 0, Use::Evaluate);
  }
  return data::open_source(path, c, seq_len, "train", false, 0, Use::Evaluate);
}

void register_eval(CLI::App& app, Action& action) {
  struct Opts { std::string model, input; bool json = false; int64_t batch = 8, seq_len = 256, max_rows = 0, threads = 0; std::string dtype = "fp32", routing = "choice", device = "cpu"; };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("eval", "Loss and per-modality loss of a model on data");
  sub->add_option("--model", o->model, "model .safetensors")->required();
  sub->add_option("--input", o->input, "data: a .jsonl file or a shard directory")->required();
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->add_option("--batch", o->batch, "rows per forward pass")->check(positive_int());
  auto* seq_opt = sub->add_option("--seq-len", o->seq_len,
                                  "positions per row for shard data (default: 256, or the model's max_seq_len if smaller)")
                      ->check(positive_int());
  sub->add_option("--max-rows", o->max_rows, "evaluate at most this many rows (0: all)")->check(non_negative_int());
  sub->add_option("--threads", o->threads, "threads (0: all cores)")->check(int_range(0, 4096));
  sub->add_option("--dtype", o->dtype, "GEMM compute precision")->check(CLI::IsMember({"fp32", "bf16"}));
  sub->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  sub->add_option("--routing", o->routing,
                  "MoE routing: choice (expert choice, as trained) or threshold (the calibrated per-expert "
                  "thresholds generation uses; also reports how often the two agree)")
      ->check(CLI::IsMember({"choice", "threshold"}));
  sub->callback([o, seq_opt, &action] {
    const bool seq_given = seq_opt->count() > 0;
    action = [o, seq_given] {
      set_threads(static_cast<int>(o->threads));
      const ModelConfig c = read_model_config(o->model);
      // Only the default shrinks to fit the model; a length asked for is never cut.
      if (seq_given && o->seq_len > c.max_seq_len)
        fail("--seq-len ", o->seq_len, " exceeds the model's max_seq_len ", c.max_seq_len, " (", o->model,
             "); use --seq-len ", c.max_seq_len, " or less");
      auto src = open_eval_source(o->input, c, std::min(o->seq_len, c.max_seq_len));
      // A batch never needs more rows than will be evaluated (results do not depend on
      // batching), so a large --batch on small data allocates only what it uses.
      const int64_t rows = o->max_rows > 0 ? std::min(o->max_rows, src->n_rows()) : src->n_rows();
      const int64_t batch = std::min(o->batch, rows);
      Model model(c, batch, src->row_len(), false, parse_precision(o->dtype, "--dtype"),
                  parse_device(o->device, "--device"));
      load_model_weights(o->model, model);
      const bool threshold = o->routing == "threshold";
      if (threshold) {
        if (!c.has_moe()) fail("--routing threshold: ", o->model, " has no mixture-of-experts layer");
        model.use_threshold_routing(true);
        model.measure_routing_agreement(true);
      }
      TokenBatch scratch;
      const LossSums s = evaluate(model, *src, batch, o->max_rows, scratch);
      if (s.targets == 0 && s.diffusion_values == 0)
        fail("no targets to evaluate in ", o->input, o->max_rows > 0 ? (rows == 1 ? std::string(" (its first row)") : cat(" (its first ", rows, " rows)")) : "",
             ": every row evaluated has fewer than 2 tokens");
      auto j = loss_json(c, s);
      if (threshold) {
        const Model::RoutingAgreement& a = model.routing_agreement();
        const double d = static_cast<double>(std::max<int64_t>(a.decisions, 1));
        j["routing"] = {{"mode", "threshold"}, {"agreement", a.agree / d}, {"decisions", a.decisions},
                        {"choice_picks_per_decision", a.choice_picks / d},
                        {"threshold_picks_per_decision", a.threshold_picks / d}};
      }
      if (o->json) {
        std::printf("%s\n", j.dump().c_str());
      } else {
        if (threshold)
          std::printf("threshold routing agrees with expert choice on %.2f%% of %lld (position, expert) decisions; "
                      "expert choice picks %.3f, the thresholds %.3f per decision\n",
                      100.0 * j["routing"]["agreement"].get<double>(), static_cast<long long>(j["routing"]["decisions"].get<int64_t>()),
                      j["routing"]["choice_picks_per_decision"].get<double>(), j["routing"]["threshold_picks_per_decision"].get<double>());
        std::printf("loss %.6f over %lld targets\n", j["loss"].get<double>(), static_cast<long long>(s.targets));
        if (c.has_continuous())
          std::printf("  loss/lm %.6f + %g x loss/diffusion %.6f\n", s.lm_mean(), c.diffusion_weight, s.diffusion_mean());
        for (int m = 0; m < c.n_modalities(); ++m)
          if (s.targets_by_mod[m] > 0)
            std::printf("  %-10s %.6f over %lld %s\n", c.modalities[m].name.c_str(), s.modality_mean(c, m),
                        static_cast<long long>(s.targets_by_mod[m]),
                        c.modalities[m].continuous ? "positions (mean squared error)" : "targets");
      }
      return 0;
    };
  });
}

}  // namespace mot::cli
