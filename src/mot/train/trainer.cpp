#include "mot/train/trainer.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/data/dataset.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"
#include "mot/train/evaluate.hpp"
#include "mot/train/optimizer.hpp"

namespace mot {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

struct RunPaths {
  std::string dir, model, state, config, metrics;
  explicit RunPaths(const std::string& d)
      : dir(d), model(d + "/model.safetensors"), state(d + "/state.safetensors"), config(d + "/config.toml"),
        metrics(d + "/metrics.jsonl") {}
};

// Keeps metrics lines up to `step` (a resumed run rewrites what came after).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (json::parse(line).value("step", int64_t{0}) <= step) kept += line + "\n";
    } catch (const json::exception&) {
      // A torn last line from a crash: drop it.
    }
  }
  io::write_file_atomic(path, kept);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string modality_losses(const ModelConfig& c, const LossSums& s) {
  std::string out;
  for (int m = 0; m < c.n_modalities(); ++m)
    if (s.targets_by_mod[m] > 0)
      out += cat(" ", c.modalities[m].name, " ", fmt("%.4f", s.by_mod[m] / s.targets_by_mod[m]));
  return out;
}

}  // namespace

int run_training(const TrainOptions& opt) {
  if (opt.out_dir.empty()) fail("--out RUN/ is required");
  const RunPaths paths(opt.out_dir);
  RunConfig rc;
  TrainState state;
  if (opt.resume) {
    for (const auto& p : {paths.config, paths.model, paths.state})
      if (!fs::exists(p)) fail(opt.out_dir, ": cannot resume: ", fs::path(p).filename().string(), " is missing");
    for (const auto& kv : opt.overrides)
      if (kv.rfind("train.", 0) != 0 && kv.rfind("data.", 0) != 0)
        fail("--set ", kv, ": a resumed run keeps its model; only train.* and data.* may change");
    rc = load_run_config(paths.config, opt.overrides, opt.data);
  } else {
    if (opt.config_path.empty()) fail("--config C.toml is required (or --resume an existing run)");
    if (fs::exists(paths.model) || fs::exists(paths.state))
      fail(opt.out_dir, ": already holds a run; pass --resume to continue it or choose another --out");
    rc = load_run_config(opt.config_path, opt.overrides, opt.data);
  }
  if (opt.steps > 0) rc.train.steps = opt.steps;
  const ModelConfig& mc = rc.model;
  const TrainConfig& tc = rc.train;
  set_threads(static_cast<int>(tc.threads));

  auto train_src = data::open_source(rc.data.path, mc, tc.seq_len, "train", true, static_cast<uint64_t>(tc.seed));
  std::vector<data::NamedSource> vals;
  if (!rc.data.val_path.empty()) {
    vals = data::open_val_sets(rc.data.val_path, mc, tc.seq_len);
    if (vals.empty()) vals.push_back({"", data::open_source(rc.data.val_path, mc, tc.seq_len, "train", false, 0)});
  } else {
    vals = data::open_val_sets(rc.data.path, mc, tc.seq_len);
  }
  int64_t val_len = 0;
  for (const auto& v : vals) val_len = std::max(val_len, v.src->row_len());
  const int64_t row_len = std::max(train_src->row_len(), val_len);
  Model model(mc, tc.batch_size, row_len, true, cpu::parse_precision(tc.dtype, "train.dtype"));

  const std::string run_json = rc.to_json().dump();
  if (opt.resume) {
    state = load_train_state(paths.state, model);
    load_model_weights(paths.model, model);
    const auto saved = read_model_config(paths.model).to_json();
    if (saved != mc.to_json()) fail(paths.model, ": model config differs from ", paths.config);
    // The model and the state are renamed into place one after the other; a crash in
    // between leaves them at different steps. Refuse rather than resume inconsistently.
    const std::string model_step = model_file_step(paths.model);
    if (model_step != std::to_string(state.step))
      fail(opt.out_dir, ": model.safetensors is at step ", model_step, " but state.safetensors at step ", state.step,
           " (interrupted while saving); keep the older pair or start a new run");
    std::fprintf(stderr, "resuming %s at step %lld\n", opt.out_dir.c_str(), static_cast<long long>(state.step));
    truncate_metrics(paths.metrics, state.step);
  } else {
    std::error_code ec;
    fs::create_directories(opt.out_dir, ec);
    if (ec) fail(opt.out_dir, ": cannot create run directory: ", ec.message());
    if (!opt.init_path.empty()) {
      const ModelConfig ic = read_model_config(opt.init_path);
      if (ic.to_json() != mc.to_json())
        fail(opt.init_path, ": its model config differs from the run's [model] config");
      load_model_weights(opt.init_path, model);
    } else {
      init_params(mc, model.table(), model.params(), static_cast<uint64_t>(tc.seed));
    }
    io::write_file_atomic(paths.config, rc.to_toml());
    io::write_file_atomic(paths.metrics, "");
  }

  std::FILE* metrics = std::fopen(paths.metrics.c_str(), "a");
  if (!metrics) fail(paths.metrics, ": cannot open for appending");
  struct Closer { std::FILE* f; ~Closer() { std::fclose(f); } } closer{metrics};

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit becomes a clean write error

  std::fprintf(stderr, "model: %s, %zu parameters, %d modalities | data: %s | %lld rows x %lld tokens x %lld accum | %d threads, BLAS %s\n",
               mc.arch.c_str(), model.table().total, mc.n_modalities(), train_src->describe().c_str(),
               static_cast<long long>(tc.batch_size), static_cast<long long>(train_src->row_len()),
               static_cast<long long>(tc.grad_accum), thread_count(), blas_core_name());

  auto save = [&](int64_t step) {
    TrainState s{step, state.data_cursor, run_json};
    save_model(paths.model, model, {{"step", std::to_string(step)}});
    save_train_state(paths.state, model, s);
  };

  std::vector<TokenBatch> micro(tc.grad_accum);
  TokenBatch eval_scratch;
  LossSums sums, val;
  const size_t P = model.table().total;
  int64_t tokens_total = 0;
  const int64_t end_step = tc.steps;
  for (int64_t step = state.step; step < end_step; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t targets = 0;
    for (auto& mb : micro) {
      data::fill_batch(*train_src, state.data_cursor, tc.batch_size, mb);
      state.data_cursor += tc.batch_size;
      targets += data::count_targets(mb);
    }
    std::fill(model.grads(), model.grads() + P, 0.0f);
    sums.reset(mc.n_modalities());
    const float scale = targets > 0 ? 1.0f / static_cast<float>(targets) : 0.0f;
    try {
      for (auto& mb : micro) model.run(mb, true, scale, sums);
    } catch (const Error& e) {
      fail("step ", step + 1, ": ", e.what());
    }
    const double loss = targets ? sums.loss / targets : 0.0;
    const double gnorm = clip_gradients(model, tc.grad_clip);
    if (!std::isfinite(loss) || !std::isfinite(gnorm))
      fail("training diverged at step ", step + 1, " (loss ", loss, ", grad norm ", gnorm,
           "); the last checkpoint in ", opt.out_dir, " is kept");
    const double lr = lr_at(tc, step);
    adamw_step(model, tc, lr, step + 1);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    tokens_total += targets;
    const int64_t done = step + 1;

    json line = {{"step", done}, {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm}, {"tokens", targets},
                 {"ms", ms}, {"tokens_per_s", targets / (ms / 1000.0)}};
    for (int m = 0; m < mc.n_modalities(); ++m)
      if (sums.targets_by_mod[m] > 0) line["loss/" + mc.modalities[m].name] = sums.by_mod[m] / sums.targets_by_mod[m];
    const bool do_eval = !vals.empty() && ((tc.eval_every > 0 && done % tc.eval_every == 0) || done == end_step);
    std::string val_text;
    if (do_eval) {
      val.reset(mc.n_modalities());
      const bool named = vals.size() > 1 || !vals[0].name.empty();
      for (const auto& v : vals) {
        const LossSums part = evaluate(model, *v.src, tc.batch_size, tc.eval_batches * tc.batch_size, eval_scratch);
        val.add(part);
        if (!named) continue;
        const std::string key = "val/" + v.name + "/loss";
        line[key] = part.targets ? part.loss / part.targets : 0.0;
        for (int m = 0; m < mc.n_modalities(); ++m)
          if (part.targets_by_mod[m] > 0) line[key + "/" + mc.modalities[m].name] = part.by_mod[m] / part.targets_by_mod[m];
        val_text += cat("  val   ", v.name, " | loss ", fmt("%.4f", part.targets ? part.loss / part.targets : 0.0), " |",
                        modality_losses(mc, part), "\n");
      }
      line["val_loss"] = val.targets ? val.loss / val.targets : 0.0;
      for (int m = 0; m < mc.n_modalities(); ++m)
        if (val.targets_by_mod[m] > 0) line["val_loss/" + mc.modalities[m].name] = val.by_mod[m] / val.targets_by_mod[m];
    }
    const std::string text = line.dump() + "\n";
    if (std::fputs(text.c_str(), metrics) < 0 || std::fflush(metrics) != 0)
      fail(paths.metrics, ": write failed (disk full?)");
    if (done % tc.log_every == 0 || done == end_step || done == state.step + 1) {
      std::printf("step %6lld/%lld | loss %.4f |%s | lr %.2e | gnorm %.3f | %.1f ms | %.0f tok/s\n",
                  static_cast<long long>(done), static_cast<long long>(end_step), loss,
                  modality_losses(mc, sums).c_str(), lr, gnorm, ms, targets / (ms / 1000.0));
      std::fflush(stdout);
    }
    if (do_eval) {
      std::printf("  val   step %lld | loss %.4f |%s\n%s", static_cast<long long>(done),
                  val.targets ? val.loss / val.targets : 0.0, modality_losses(mc, val).c_str(), val_text.c_str());
      std::fflush(stdout);
    }
    const bool stop = opt.stop_at > 0 && done == opt.stop_at;
    const int sig = g_signal.load();
    if ((tc.save_every > 0 && done % tc.save_every == 0) || done == end_step || stop || sig) save(done);
    if (sig) {
      std::fprintf(stderr, "interrupted (signal %d) after step %lld; checkpoint saved in %s (continue with --resume)\n",
                   sig, static_cast<long long>(done), opt.out_dir.c_str());
      return 130;
    }
    if (stop) {
      std::fprintf(stderr, "stopped after step %lld as asked; continue with --resume\n", static_cast<long long>(done));
      return 0;
    }
  }
  if (state.step >= end_step) std::fprintf(stderr, "nothing to do: the run already finished %lld steps\n",
                                           static_cast<long long>(end_step));
  std::fprintf(stderr, "done: %lld tokens trained this session; model in %s\n", static_cast<long long>(tokens_total),
               paths.model.c_str());
  return 0;
}

}  // namespace mot
