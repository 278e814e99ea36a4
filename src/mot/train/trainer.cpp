#include "mot/train/trainer.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/dir_lock.hpp"
#include "mot/model/memory.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"
#include "mot/train/evaluate.hpp"
#include "mot/train/optimizer.hpp"

namespace mot {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::atomic<int> g_signal{0};

// The first SIGINT/SIGTERM/SIGHUP asks for a checkpoint at the end of the current step;
// a second one stops at once (the last checkpoint on disk is complete either way).
extern "C" void on_signal(int sig) {
  if (g_signal.exchange(sig) == 0) return;
  static const char msg[] = "\nmot: second signal: stopping now without saving; the last checkpoint is intact\n";
  [[maybe_unused]] ssize_t n = ::write(2, msg, sizeof msg - 1);
  ::_exit(130);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  // A closed stdout (`mot train ... | head`) must not kill the run: writes then fail
  // with EPIPE, and the loop below stops with a checkpoint.
  std::signal(SIGPIPE, SIG_IGN);
}

// `mot compare` starts trainers with MOT_PARENT_PID set: such a trainer gets SIGTERM
// (save and exit) when its parent dies, even by kill -9, instead of running on as an
// orphan beside the re-run comparison.
void die_with_parent_if_asked() {
  const char* want = std::getenv("MOT_PARENT_PID");
  if (!want || !*want) return;
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (std::to_string(::getppid()) != want) g_signal.store(SIGTERM);  // it died before we got here
}

struct RunPaths {
  std::string dir, model, config, metrics;
  explicit RunPaths(const std::string& d)
      : dir(d), model(d + "/model.safetensors"), config(d + "/config.toml"), metrics(d + "/metrics.jsonl") {}
};

// The first key where two resolved run configs differ ("model.dim: 64 in A, 32 in B"), or "".
std::string config_difference(const json& run, const json& asked) {
  const json patch = json::diff(run, asked);
  if (patch.empty()) return "";
  std::string path = patch[0].value("path", std::string("?"));
  if (!path.empty() && path[0] == '/') path = path.substr(1);
  for (auto& c : path)
    if (c == '/') c = '.';
  const json::json_pointer ptr(patch[0].value("path", std::string("")));
  const std::string was = run.contains(ptr) ? run.at(ptr).dump() : "absent";
  const std::string now = asked.contains(ptr) ? asked.at(ptr).dump() : "absent";
  return cat(path, " is ", was, " in the run, ", now, " in --config");
}

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
  install_signal_handlers();
  die_with_parent_if_asked();
  if (fs::exists(opt.out_dir) && !fs::is_directory(opt.out_dir))
    fail(opt.out_dir, ": exists and is not a directory; --out takes a run directory");
  if (opt.resume && !fs::is_directory(opt.out_dir))
    fail(opt.out_dir, ": cannot resume: no such run directory");
  // One process per run directory, held until this function returns (or the kernel
  // drops it when the process dies). A fresh run refused before it starts leaves
  // nothing behind (see DirLock).
  io::DirLock lock(opt.out_dir, opt.resume ? "mot train --resume" : "mot train",
                   "wait for it to finish (or stop it with Ctrl-C: it saves a checkpoint), or choose another --out");
  remove_stale_checkpoint_files(opt.out_dir);
  RunConfig rc;
  TrainState state;
  std::optional<Checkpoint> resume_from;
  if (opt.resume) {
    resume_from = latest_checkpoint(opt.out_dir);
    if (!fs::exists(paths.config)) fail(opt.out_dir, ": cannot resume: config.toml is missing (not a mot run directory?)");
    if (!resume_from)
      fail(opt.out_dir, ": cannot resume: the run holds no checkpoint yet (it stopped before its first save); "
           "start it again without --resume");
    for (const auto& kv : opt.overrides)
      if (kv.rfind("train.", 0) != 0 && kv.rfind("data.", 0) != 0)
        fail("--set ", kv, ": a resumed run keeps its model; only train.* and data.* may change");
    rc = load_run_config(paths.config, opt.overrides, opt.data);
    if (opt.steps > 0) rc.train.steps = opt.steps;
    if (!opt.config_path.empty()) {
      // Re-running the original command with --resume added is fine; a different
      // config is not silently ignored.
      RunConfig asked = load_run_config(opt.config_path, opt.overrides, opt.data);
      if (opt.steps > 0) asked.train.steps = opt.steps;
      if (asked.data.path.empty()) asked.data = rc.data;  // the data came from --data then
      const std::string diff = config_difference(rc.to_json(), asked.to_json());
      if (!diff.empty())
        fail("--config ", opt.config_path, " differs from the run in ", opt.out_dir, " (", diff,
             "); a resumed run keeps its config: drop --config (change train.* or data.* with --set), "
             "or start a new run with another --out");
    }
  } else {
    if (opt.config_path.empty()) fail("--config C.toml is required (or --resume an existing run)");
    if (latest_checkpoint(opt.out_dir) || fs::exists(paths.model))
      fail(opt.out_dir, ": already holds a run; pass --resume to continue it or choose another --out");
    rc = load_run_config(opt.config_path, opt.overrides, opt.data);
    if (opt.steps > 0) rc.train.steps = opt.steps;
  }
  const ModelConfig& mc = rc.model;
  const TrainConfig& tc = rc.train;
  set_threads(static_cast<int>(tc.threads));

  auto train_src = data::open_source(rc.data.path, mc, tc.seq_len, "train", true, static_cast<uint64_t>(tc.seed),
                                     data::Use::Train);
  std::vector<data::NamedSource> vals;
  if (!rc.data.val_path.empty()) {
    vals = data::open_val_sets(rc.data.val_path, mc, tc.seq_len);
    if (vals.empty())
      vals.push_back({"", data::open_source(rc.data.val_path, mc, tc.seq_len, "train", false, 0, data::Use::Validate)});
  } else {
    vals = data::open_val_sets(rc.data.path, mc, tc.seq_len);
  }
  int64_t val_len = 0;
  for (const auto& v : vals) val_len = std::max(val_len, v.src->row_len());
  const int64_t row_len = std::max(train_src->row_len(), val_len);
  ensure_training_fits(rc, row_len);  // refuse absurd sizes (grad_accum included) before allocating
  Model model(mc, tc.batch_size, row_len, true, cpu::parse_precision(tc.dtype, "train.dtype"));

  const std::string run_json = rc.to_json().dump();
  int64_t saved_step = -1;  // the step of the newest checkpoint on disk (-1: none yet)
  if (opt.resume) {
    const Checkpoint& ck = *resume_from;
    state = load_train_state(ck.state, model);
    load_model_weights(ck.model, model);
    const auto saved = read_model_config(ck.model).to_json();
    if (saved != mc.to_json()) fail(ck.model, ": model config differs from ", paths.config);
    const std::string model_step = model_file_step(ck.model);
    if (model_step != std::to_string(state.step) || (!ck.legacy && state.step != ck.step)) {
      // Only a run saved by an older mot (model and state renamed one after the
      // other) can get here: a crash between the two renames.
      fail(ck.dir, ": model.safetensors is at step ", model_step, " but state.safetensors at step ", state.step,
           " (interrupted while saving by an older mot); the run cannot be resumed consistently, start a new run");
    }
    if (opt.stop_at > 0 && opt.stop_at <= state.step)
      fail("--stop-at ", opt.stop_at, ": the run in ", opt.out_dir, " is already at step ", state.step,
           "; give a later step");
    saved_step = state.step;
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

  lock.keep();  // the run exists from here on
  if (opt.stop_at > tc.steps)
    std::fprintf(stderr, "note: --stop-at %lld is beyond the schedule's %lld steps; training stops at %lld\n",
                 static_cast<long long>(opt.stop_at), static_cast<long long>(tc.steps),
                 static_cast<long long>(tc.steps));
  std::fprintf(stderr, "model: %s, %zu parameters, %d modalities | data: %s | %lld rows x %lld tokens x %lld accum | %d threads, BLAS %s\n",
               mc.arch.c_str(), model.table().total, mc.n_modalities(), train_src->describe().c_str(),
               static_cast<long long>(tc.batch_size), static_cast<long long>(train_src->row_len()),
               static_cast<long long>(tc.grad_accum), thread_count(), blas_core_name());

  // What a failure leaves the user, for its error line.
  auto kept = [&] {
    return saved_step >= 0 ? cat("the checkpoint of step ", saved_step, " in ", opt.out_dir, " is kept")
                           : std::string("no checkpoint was saved yet");
  };
  auto save = [&](int64_t step) {
    try {
      write_checkpoint(opt.out_dir, model, TrainState{step, state.data_cursor, run_json});
    } catch (const Error& e) {
      fail(e.what(), "; ", kept());
    }
    saved_step = step;
  };
  bool stdout_closed = false;  // EPIPE on stdout: stop with a checkpoint, like Ctrl-C
  auto flush_stdout = [&] { stdout_closed = stdout_closed || std::fflush(stdout) != 0 || std::ferror(stdout); };

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
    } catch (const NonFiniteLoss& e) {
      fail("training diverged at step ", step + 1, " (", e.what(), "); ", kept(),
           "; try a lower train.lr or train.grad_clip");
    } catch (const Error& e) {
      fail("step ", step + 1, ": ", e.what(), "; ", kept());
    }
    const double loss = targets ? sums.loss / targets : 0.0;
    const double gnorm = clip_gradients(model, tc.grad_clip);
    if (!std::isfinite(loss) || !std::isfinite(gnorm))
      fail("training diverged at step ", step + 1, " (loss ", loss, ", grad norm ", gnorm, "); ", kept(),
           "; try a lower train.lr or train.grad_clip");
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
      fail(paths.metrics, ": write failed (", std::strerror(errno), "); ", kept());
    if (done % tc.log_every == 0 || done == end_step || done == state.step + 1) {
      std::printf("step %6lld/%lld | loss %.4f |%s | lr %.2e | gnorm %.3f | %.1f ms | %.0f tok/s\n",
                  static_cast<long long>(done), static_cast<long long>(end_step), loss,
                  modality_losses(mc, sums).c_str(), lr, gnorm, ms, targets / (ms / 1000.0));
      flush_stdout();
    }
    if (do_eval) {
      std::printf("  val   step %lld | loss %.4f |%s\n%s", static_cast<long long>(done),
                  val.targets ? val.loss / val.targets : 0.0, modality_losses(mc, val).c_str(), val_text.c_str());
      flush_stdout();
    }
    const bool stop = opt.stop_at > 0 && done == opt.stop_at;
    const int sig = g_signal.load();
    if ((tc.save_every > 0 && done % tc.save_every == 0) || done == end_step || stop || sig || stdout_closed)
      save(done);
    if (stdout_closed && done < end_step) {
      std::fprintf(stderr, "stdout was closed (broken pipe) after step %lld; checkpoint saved in %s (continue with "
                   "--resume; metrics.jsonl has every step)\n", static_cast<long long>(done), opt.out_dir.c_str());
      return 130;
    }
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
