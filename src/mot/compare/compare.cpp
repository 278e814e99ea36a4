#include "mot/compare/compare.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "mot/compare/catalog.hpp"
#include "mot/compare/generation.hpp"
#include "mot/compare/manifest.hpp"
#include "mot/compare/report.hpp"
#include "mot/compare/runner.hpp"
#include "mot/compare/variants.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/dir_lock.hpp"
#include "mot/model/flops.hpp"

namespace mot::compare {

namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Validation loss is what a comparison measures; without validation data every table
// would be empty, so refuse before training anything.
void require_validation(const RunConfig& rc) {
  if (!rc.data.val_path.empty()) return;
  std::error_code ec;
  if (fs::is_directory(rc.data.path, ec) && !data::list_data_dir(rc.data.path).val.empty()) return;
  fail(rc.data.path, ": no validation data (val*.shard files, or [data] val_path); a comparison measures "
       "validation loss");
}

std::string setup_text(const CompareOptions& o, const RunConfig& rc, const std::string& data, int64_t steps,
                       int threads) {
  const ModelConfig& m = rc.model;
  const TrainConfig& t = rc.train;
  std::string mods;
  for (const auto& x : m.modalities) mods += (mods.empty() ? "" : ", ") + x.name;
  return cat("Every variant has width d ", m.dim, ", ", m.n_layers, " layers, ", m.n_heads, " heads, FFN ",
             m.ffn_hidden, ", vocabulary ", m.vocab_size, " (", mods, ") and trains on the same data (`", data,
             "`), data order, batch (", t.batch_size, " rows x ", t.seq_len, " tokens x ", t.grad_accum,
             " accumulation) and schedule (", steps, " steps, lr ", t.lr, " with ", t.warmup_steps,
             " warm-up steps then cosine to ", t.min_lr, ", AdamW, clip ", t.grad_clip, "); run k of every variant "
             "uses seed k (", o.seeds, " seed(s)). Validation every ", t.eval_every, " steps and at the end, on ",
             t.eval_batches * t.batch_size, " rows per validation set. Runs trained ", o.parallel, " at a time with ",
             threads, " thread(s) each.");
}

}  // namespace

int run_compare(const CompareOptions& o) {
  if (o.out.empty()) fail("--out DIR is required");
  // The directory is quoted inside gnuplot scripts and a shell command.
  if (o.out.find('\'') != std::string::npos) fail("--out ", o.out, ": a path with ' cannot be plotted; rename it");
  std::string data = o.data;
  if (data.empty()) data = load_run_config(o.config, o.overrides).data.path;
  if (data.empty()) fail("--data D is required (", o.config, " has no [data] path)");
  if (!fs::exists(data)) fail(data, ": data not found");
  // Runs are resumed from their own config.toml, maybe from another directory.
  data = fs::weakly_canonical(fs::absolute(data)).string();

  std::vector<Variant> variants = resolve_variants(o.variants, o.config, o.overrides, data);
  const RunConfig& base = variants.front().config;
  require_validation(base);
  const int64_t steps = o.steps ? o.steps : base.train.steps;
  for (auto& v : variants) v.config.train.steps = steps;
  std::vector<int> seeds;
  for (int s = 1; s <= o.seeds; ++s) seeds.push_back(s);

  if (fs::exists(o.out) && !fs::is_directory(o.out)) fail(o.out, ": exists and is not a directory");
  // Locked before it is inspected: a second comparison started on the same directory
  // is refused here, instead of finding it half-created.
  io::DirLock lock(o.out, "mot " + o.who,
                         "wait for it to finish (Ctrl-C there saves every run), or choose another --out");
  io::remove_stale_temporaries(o.out, true);
  claim_compare_dir(o.out, describe_comparison(variants, seeds, steps, data), o.fresh);
  lock.keep();
  fs::create_directories(o.out + "/configs");
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = std::max(1, static_cast<int>(cores) / o.parallel);
  std::vector<TrainJob> jobs;
  for (const auto& v : variants) {
    const std::string cfg = o.out + "/configs/" + v.name + ".toml";
    io::write_file_atomic(cfg, v.config.to_toml());
    const ModelCounts k = count_model(v.config.model, v.config.train.seq_len);
    std::fprintf(stderr, "%s: %-16s %.3fM parameters, %.3fM active per token, %.3g training FLOPs per token\n",
                 o.who.c_str(), v.name.c_str(), k.params_total / 1e6, k.params_active / 1e6, k.flops_train);
  }
  for (int s : seeds)
    for (const auto& v : variants)
      jobs.push_back({cat("seed ", s, " ", v.name), cat(o.out, "/seed-", s, "/", v.name),
                      {"--config", o.out + "/configs/" + v.name + ".toml", "--set", cat("train.seed=", s), "--set",
                       cat("train.threads=", threads)},
                      steps});
  const int64_t evals = base.train.eval_every > 0 ? steps / base.train.eval_every : 0;
  if (evals < 4)
    std::fprintf(stderr,
                 "%s: note: only %lld validation point(s) per run; matching ratios are coarse "
                 "(--set train.eval_every=K for more)\n",
                 o.who.c_str(), static_cast<long long>(std::max<int64_t>(evals, 1)));
  std::fprintf(stderr, "%s: training %zu runs of %lld steps, %d at a time with %d thread(s) each\n", o.who.c_str(),
               jobs.size(), static_cast<long long>(steps), o.parallel, threads);
  if (!run_train_jobs(jobs, o.parallel)) {
    std::fprintf(stderr, "%s: interrupted; finished runs are kept and unfinished ones saved: run the same command "
                 "again to resume\n", o.who.c_str());
    return 130;
  }

  ReportInput in;
  in.out_dir = o.out;
  in.seeds = seeds;
  std::vector<std::string> names;
  for (const auto& v : variants) {
    const ModelCounts k = count_model(v.config.model, v.config.train.seq_len);
    in.variants.push_back({v.name, v.description, k.params_total, k.params_active, k.flops_train});
    names.push_back(v.name);
  }
  for (int s : seeds)
    for (const auto& v : variants)
      in.runs.push_back({v.name, s, read_metrics(cat(o.out, "/seed-", s, "/", v.name, "/metrics.jsonl"))});
  in.metrics = validation_metrics(base.model, in.runs);
  if (in.metrics.empty()) fail("the runs in ", o.out, " logged no per-modality validation loss to compare");
  if (o.evalgen_scenes > 0 && has_generation_ground_truth(data)) {
    std::fprintf(stderr, "%s: scoring generation (mot evalgen, %lld held-out scenes per run)\n", o.who.c_str(),
                 static_cast<long long>(o.evalgen_scenes));
    const GenerationResults g = evaluate_generation(o.out, data, names, seeds, o.evalgen_scenes, o.who);
    in.generation = generation_section(g, o.out, names, seeds, in.generation_answer);
  }
  in.title = o.title.empty() ? join(names, " vs ") + " on " + fs::path(data).filename().string() : o.title;
  in.setup = setup_text(o, base, data, steps, threads) + (o.notes.empty() ? "" : "\n\n" + o.notes);
  if (o.command.empty()) {
    std::string c = cat("mot compare --config ", o.config, " --data ", data, " --variants ", join(o.variants, ","),
                        " --steps ", steps, " --seeds ", o.seeds, " --parallel ", o.parallel, " --out ", o.out);
    for (const auto& kv : o.overrides) c += " --set '" + kv + "'";
    in.commands = c;
  } else {
    in.commands = o.command;
  }
  const std::string md = write_report(in);
  const auto summary = md.find("## Summary");
  const auto end = md.find("## Time per step");
  std::printf("\n%s", md.substr(summary, end - summary).c_str());
  std::printf("%s: report %s/report.md, plots %s/loss.png, loss-flops.png, loss-wallclock.png\n", o.who.c_str(),
              o.out.c_str(), o.out.c_str());
  return 0;
}

}  // namespace mot::compare
