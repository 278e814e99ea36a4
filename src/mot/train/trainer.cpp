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
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mot/core/cpu_setup.hpp"
#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/dist/data_parallel.hpp"
#include "mot/dist/loss_sums.hpp"
#include "mot/dist/world.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/dir_lock.hpp"
#include "mot/model/memory.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"
#include "mot/train/diffusion_draw.hpp"
#include "mot/train/evaluate.hpp"
#include "mot/train/optimizer.hpp"
#include "mot/train/train_rng.hpp"

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
    if (s.targets_by_mod[m] > 0) out += cat(" ", c.modalities[m].name, " ", fmt("%.4f", s.modality_mean(c, m)));
  return out;
}

// Fixed diffusion steps the validation reports loss/diffusion at (SPEC 2b: τ in [0, T-1]).
constexpr int64_t kDiffusionBuckets[] = {100, 500, 900};

// The metrics keys of one set of loss sums: prefix = "loss", "val_loss" or "val/NAME/loss".
void loss_keys(const ModelConfig& c, const LossSums& s, const std::string& prefix, json& keys) {
  keys[prefix] = s.mean(c);
  if (c.has_continuous()) {
    keys[prefix + "/lm"] = s.lm_mean();
    keys[prefix + "/diffusion"] = s.diffusion_mean();
  }
  for (int m = 0; m < c.n_modalities(); ++m)
    if (s.targets_by_mod[m] > 0) keys[prefix + "/" + c.modalities[m].name] = s.modality_mean(c, m);
}

// Refuses an --out that cannot be this run's directory, before anything is locked.
void check_out_dir(const TrainOptions& opt) {
  if (fs::exists(opt.out_dir) && !fs::is_directory(opt.out_dir))
    fail(opt.out_dir, ": exists and is not a directory; --out takes a run directory");
  if (opt.resume && !fs::is_directory(opt.out_dir))
    fail(opt.out_dir, ": cannot resume: no such run directory");
}

// The run's resolved config and, when resuming, the checkpoint to continue from.
struct RunStart {
  RunConfig rc;
  std::optional<Checkpoint> resume_from;
};

RunConfig load_config(const std::string& path, const TrainOptions& opt) {
  RunConfig rc = load_run_config(path, opt.overrides, opt.data);
  if (opt.steps > 0) rc.train.steps = opt.steps;
  return rc;
}

// --resume: the run's own config.toml (train.* and data.* may change) and its newest checkpoint.
RunStart resume_run(const TrainOptions& opt, const RunPaths& paths) {
  RunStart start;
  start.resume_from = latest_checkpoint(opt.out_dir);
  if (!fs::exists(paths.config)) fail(opt.out_dir, ": cannot resume: config.toml is missing (not a mot run directory?)");
  if (!start.resume_from)
    fail(opt.out_dir, ": cannot resume: the run holds no checkpoint yet (it stopped before its first save); "
         "start it again without --resume");
  for (const auto& kv : opt.overrides)
    if (kv.rfind("train.", 0) != 0 && kv.rfind("data.", 0) != 0)
      fail("--set ", kv, ": a resumed run keeps its model; only train.* and data.* may change");
  start.rc = load_config(paths.config, opt);
  if (!opt.config_path.empty()) {
    // Re-running the original command with --resume added is fine; a different
    // config is not silently ignored.
    RunConfig asked = load_config(opt.config_path, opt);
    if (asked.data.path.empty()) asked.data = start.rc.data;  // the data came from --data then
    const std::string diff = config_difference(start.rc.to_json(), asked.to_json());
    if (!diff.empty())
      fail("--config ", opt.config_path, " differs from the run in ", opt.out_dir, " (", diff,
           "); a resumed run keeps its config: drop --config (change train.* or data.* with --set), "
           "or start a new run with another --out");
  }
  return start;
}

// A new run: --config, into a directory that holds no run yet.
RunStart new_run(const TrainOptions& opt, const RunPaths& paths) {
  if (opt.config_path.empty()) fail("--config C.toml is required (or --resume an existing run)");
  if (latest_checkpoint(opt.out_dir) || fs::exists(paths.model))
    fail(opt.out_dir, ": already holds a run; pass --resume to continue it or choose another --out");
  return {load_config(opt.config_path, opt), std::nullopt};
}

// The training rows and the validation sets.
struct TrainData {
  std::unique_ptr<data::RowSource> train;
  std::vector<data::NamedSource> vals;
  int64_t row_len = 0;  // the longest row of either: what the model is sized for
};

TrainData build_data(const RunConfig& rc) {
  const ModelConfig& mc = rc.model;
  const TrainConfig& tc = rc.train;
  TrainData d;
  d.train = data::open_source(rc.data.path, mc, tc.seq_len, "train", true, static_cast<uint64_t>(tc.seed),
                              data::Use::Train);
  if (!rc.data.val_path.empty()) {
    d.vals = data::open_val_sets(rc.data.val_path, mc, tc.seq_len);
    if (d.vals.empty())
      d.vals.push_back({"", data::open_source(rc.data.val_path, mc, tc.seq_len, "train", false, 0, data::Use::Validate)});
  } else {
    d.vals = data::open_val_sets(rc.data.path, mc, tc.seq_len);
  }
  int64_t val_len = 0;
  for (const auto& v : d.vals) val_len = std::max(val_len, v.src->row_len());
  d.row_len = std::max(d.train->row_len(), val_len);
  return d;
}

// A data-parallel rank holds the AdamW moments of its ZeRO-1 shard only.
Model make_model(const RunConfig& rc, int64_t row_len, const dist::World& world, Device device) {
  ensure_training_fits(rc, row_len);  // refuse absurd sizes (grad_accum included) before allocating
  if (device != Device::cpu && world.parallel())
    fail("--device ", device_name(device), ": data-parallel training runs on the CPU only so far (one GPU per run)");
  const size_t moments =
      world.parallel() ? dist::shard_of(build_param_table(rc.model).total, world.rank(), world.size()).size() : 0;
  return Model(rc.model, rc.train.batch_size, row_len, true, parse_precision(rc.train.dtype, "train.dtype"),
               device, moments);
}

// y += x elementwise.
void add_into(float* y, const float* x, size_t n) {
  const int64_t m = static_cast<int64_t>(n);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < m; ++i) y[i] += x[i];
}

// What one optimizer step measured.
struct StepResult {
  int64_t done = 0;     // steps done after it
  int64_t targets = 0;    // tokens predicted (loss/lm's count)
  int64_t positions = 0;  // positions trained: targets, plus continuous (image) positions
  double loss = 0, grad_norm = 0, lr = 0, ms = 0;
  dist::DataParallel::StepStats comm;  // data-parallel runs: time waiting for the other ranks
};

// An error every rank meets at the same point (rank 0 reports it; the others end
// quietly with the same status), so the job can end with MPI_Finalize.
struct SharedError : Error {
  using Error::Error;
};

// One `mot train` session over a run directory: model, data, training state (step,
// data cursor, RNG), the metrics file and the checkpoints.
class Trainer {
 public:
  Trainer(const TrainOptions& opt, const RunConfig& rc, TrainData& data, Model& model, dist::World& world)
      : opt_(opt), paths_(opt.out_dir), rc_(rc), mc_(rc.model), tc_(rc.train), data_(data), model_(model),
        run_json_(rc.to_json().dump()), micro_(tc_.grad_accum), world_(world) {
    if (world_.parallel()) dp_ = std::make_unique<dist::DataParallel>(world_, model_.table());
    buckets_ = dist::DataParallel::bucket_ranges(model_.table());
    if (micro_.size() > 1) accum_.assign(model_.table().total, 0.0f);
  }

  void resume(const Checkpoint& ck);
  void start_new();
  void open_metrics();
  // Data-parallel: rank 0's weights, moments and training state to every rank.
  void share_start();
  int train();

 private:
  void announce() const;
  StepResult one_step(int64_t step);
  void run_micro_batches(const LossScale& scale, int64_t step);
  void layer_grads_done(int layer, bool accumulated);
  void update(int64_t step, StepResult& r);
  int64_t next_batches();
  void evaluate_and_log(const StepResult& r);
  json evaluate_val(std::string& text);
  void write_metrics_line(const json& line);
  std::optional<int> checkpoint_or_stop(int64_t done);
  void save_checkpoint(int64_t step);
  void calibrate_moe_thresholds();
  int finish() const;
  std::string kept() const;
  void flush_stdout() { stdout_closed_ = stdout_closed_ || std::fflush(stdout) != 0 || std::ferror(stdout); }
  template <class... A>
  [[noreturn]] void diverged(int64_t step, const A&... why) const {
    const std::string text =
        cat("training diverged at step ", step + 1, " (", why..., "); ", kept(), "; try a lower train.lr or train.grad_clip");
    if (dp_ && world_.parallel()) throw SharedError(text);  // the step's global loss and norm: every rank sees it
    throw Error(text);
  }

  const TrainOptions& opt_;
  const RunPaths paths_;
  const RunConfig& rc_;
  const ModelConfig& mc_;
  const TrainConfig& tc_;
  TrainData& data_;
  Model& model_;
  const std::string run_json_;
  TrainState state_;              // the state after state_.step steps
  Rng rng_;                       // the training RNG (train_rng.hpp), saved with the state
  int64_t start_step_ = 0;        // the step this session started at
  int64_t saved_step_ = -1;       // the step of the newest checkpoint on disk (-1: none yet)
  int64_t tokens_total_ = 0;      // trained this session
  bool stdout_closed_ = false;    // EPIPE on stdout: stop with a checkpoint, like Ctrl-C
  struct Closer { void operator()(std::FILE* f) const { std::fclose(f); } };
  std::unique_ptr<std::FILE, Closer> metrics_;
  std::vector<TokenBatch> micro_;  // one batch per gradient-accumulation step
  TokenBatch eval_scratch_;
  LossSums sums_, val_;
  dist::World& world_;
  std::unique_ptr<dist::DataParallel> dp_;  // data-parallel runs only
  TokenBatch others_;                      // another rank's micro-batch, filled for its RNG draws
  std::vector<float> full_m_, full_v_;     // rank 0, between resume() and share_start()
  std::vector<dist::DataParallel::Range> buckets_;  // the gradient's layer ranges, in backward order
  std::vector<float> accum_;               // grad_accum > 1: the earlier micro-batches' gradient sum
  LossSums part_;                          // one micro-batch's loss sums
};

// Continues from `ck`: weights, AdamW moments, step, data cursor and RNG; the metrics
// after its step are cut off (this session rewrites them).
void Trainer::resume(const Checkpoint& ck) {
  try {  // rank 0 alone resumes (the others get its state in share_start)
    finish_interrupted_commit(opt_.out_dir, ck);
  } catch (const Error& e) {
    fail(e.what(), "; the checkpoint of step ", ck.step, " in ", ck.dir, " is kept");
  }
  if (dp_) {
    full_m_.assign(model_.table().total, 0.0f);
    full_v_.assign(model_.table().total, 0.0f);
  }
  state_ = load_train_state(ck.state, model_, dp_ ? FullMoments{full_m_.data(), full_v_.data()} : FullMoments{});
  load_model_weights(ck.model, model_);
  const auto saved = read_model_config(ck.model).to_json();
  if (saved != mc_.to_json()) fail(ck.model, ": model config differs from ", paths_.config);
  const std::string model_step = model_file_step(ck.model);
  if (model_step != std::to_string(state_.step) || (!ck.legacy && state_.step != ck.step)) {
    // Only a run saved by an older mot (model and state renamed one after the
    // other) can get here: a crash between the two renames.
    fail(ck.dir, ": model.safetensors is at step ", model_step, " but state.safetensors at step ", state_.step,
         " (interrupted while saving by an older mot); the run cannot be resumed consistently, start a new run");
  }
  if (opt_.stop_at > 0 && opt_.stop_at <= state_.step)
    fail("--stop-at ", opt_.stop_at, ": the run in ", opt_.out_dir, " is already at step ", state_.step,
         "; give a later step");
  if (state_.rng_state)
    rng_.set_state(*state_.rng_state);
  else  // a state file from before the RNG was saved
    rng_ = train_rng(static_cast<uint64_t>(tc_.seed), state_.step);
  start_step_ = saved_step_ = state_.step;
  std::fprintf(stderr, "resuming %s at step %lld\n", opt_.out_dir.c_str(), static_cast<long long>(state_.step));
  truncate_metrics(paths_.metrics, state_.step);
}

// A new run: its directory, initial (or --init) weights, config.toml and an empty metrics file.
void Trainer::start_new() {
  std::error_code ec;
  fs::create_directories(opt_.out_dir, ec);
  if (ec) fail(opt_.out_dir, ": cannot create run directory: ", ec.message());
  if (!opt_.init_path.empty()) {
    const ModelConfig ic = read_model_config(opt_.init_path);
    if (ic.to_json() != mc_.to_json()) fail(opt_.init_path, ": its model config differs from the run's [model] config");
    load_model_weights(opt_.init_path, model_);
  } else {
    init_params(mc_, model_.table(), model_.params(), static_cast<uint64_t>(tc_.seed));
  }
  rng_ = train_rng(static_cast<uint64_t>(tc_.seed));
  io::write_file_atomic(paths_.config, rc_.to_toml());
  io::write_file_atomic(paths_.metrics, "");
}

void Trainer::open_metrics() {
  if (!world_.root()) return;
  metrics_.reset(std::fopen(paths_.metrics.c_str(), "a"));
  if (!metrics_) fail(paths_.metrics, ": cannot open for appending");
}

void Trainer::share_start() {
  if (!dp_) return;
  world_.broadcast_floats(model_.params(), model_.table().total, "start: weights");
  struct Head {
    int64_t step, start, saved, resumed;
    uint64_t cursor;
    std::array<uint64_t, 4> rng;
  } h{state_.step, start_step_, saved_step_, full_m_.empty() ? 0 : 1, state_.data_cursor, rng_.state()};
  world_.broadcast_bytes(&h, sizeof h, "start: training state");
  state_.step = h.step;
  state_.data_cursor = h.cursor;
  start_step_ = h.start;
  saved_step_ = h.saved;
  rng_.set_state(h.rng);
  const size_t shard = dp_->shard().size();
  if (h.resumed) {
    world_.scatterv(full_m_.data(), dp_->shard_counts(), dp_->shard_displs(), model_.adam_m(), "start: AdamW moments");
    world_.scatterv(full_v_.data(), dp_->shard_counts(), dp_->shard_displs(), model_.adam_v(), "start: AdamW moments");
  } else {
    std::fill(model_.adam_m(), model_.adam_m() + shard, 0.0f);
    std::fill(model_.adam_v(), model_.adam_v() + shard, 0.0f);
  }
  std::vector<float>().swap(full_m_);
  std::vector<float>().swap(full_v_);
}

// Trains from the current step to train.steps; returns the exit status (130 when
// stopped by a signal or a closed stdout, after saving).
int Trainer::train() {
  announce();
  try {
    for (int64_t step = state_.step; step < tc_.steps; ++step) {
      const StepResult r = one_step(step);
      evaluate_and_log(r);
      if (const auto status = checkpoint_or_stop(r.done)) return *status;
    }
  } catch (const dist::CommError& e) {
    throw dist::CommError(cat(e.what(), "; ", kept()));
  }
  return finish();
}

void Trainer::announce() const {
  if (!world_.root()) return;
  if (opt_.device != Device::cpu) std::fprintf(stderr, "device: %s\n", device_description(opt_.device).c_str());
  if (dp_)
    std::fprintf(stderr, "data-parallel: %d ranks x %lld rows x %lld accum = %lld rows per step; AdamW moments "
                 "sharded (ZeRO-1, %zu of %zu per rank); collectives time out after %.0f s\n",
                 world_.size(), static_cast<long long>(tc_.batch_size), static_cast<long long>(tc_.grad_accum),
                 static_cast<long long>(tc_.batch_size * tc_.grad_accum * world_.size()), dp_->shard().size(),
                 model_.table().total, world_.timeout());
  if (dp_) {  // what the reduce-scatter sends, bucket by bucket, as backward completes them
    size_t layer_floats = 0, rest = 0, layers = 0;
    for (const auto& b : buckets_) (b.layer >= 0 ? layer_floats : rest) += b.hi - b.lo, layers += b.layer >= 0;
    std::fprintf(stderr, "gradient buckets: %zu layers x %.2f MB, then embeddings/head/adapters %.2f MB (fp32)\n", layers,
                 layers ? 4.0 * static_cast<double>(layer_floats) / static_cast<double>(layers) / 1e6 : 0.0,
                 4.0 * static_cast<double>(rest) / 1e6);
  }
  if (opt_.stop_at > tc_.steps)
    std::fprintf(stderr, "note: --stop-at %lld is beyond the schedule's %lld steps; training stops at %lld\n",
                 static_cast<long long>(opt_.stop_at), static_cast<long long>(tc_.steps),
                 static_cast<long long>(tc_.steps));
  std::fprintf(stderr, "model: %s, %zu parameters, %d modalities | data: %s | %lld rows x %lld tokens x %lld accum | %d threads, BLAS %s\n",
               mc_.arch.c_str(), model_.table().total, mc_.n_modalities(), data_.train->describe().c_str(),
               static_cast<long long>(tc_.batch_size), static_cast<long long>(data_.train->row_len()),
               static_cast<long long>(tc_.grad_accum), thread_count(), blas_core_name());
}

// Step `step` + 1: the next grad_accum batches, forward and backward, clipping, AdamW.
StepResult Trainer::one_step(int64_t step) {
  const auto t0 = std::chrono::steady_clock::now();
  StepResult r;
  r.targets = next_batches();
  sums_.reset(mc_.n_modalities());
  LossSums counts;  // what the step's mean losses are means over
  counts.reset(mc_.n_modalities());
  counts.targets = r.targets;
  r.positions = r.targets;
  for (const auto& mb : micro_) {
    counts.diffusion_values += count_continuous(mb) * mc_.latent_dim();
    r.positions += count_continuous(mb);
  }
  if (dp_) {  // the means are over the whole global batch: every rank's counts
    int64_t mine[3] = {counts.targets, counts.diffusion_values, r.positions};
    std::vector<int64_t> all(3 * static_cast<size_t>(world_.size()));
    world_.allgather_bytes(mine, sizeof mine, all.data(), "step: target counts");
    counts.targets = counts.diffusion_values = r.positions = 0;
    for (int k = 0; k < world_.size(); ++k) {
      counts.targets += all[3 * k];
      counts.diffusion_values += all[3 * k + 1];
      r.positions += all[3 * k + 2];
    }
    r.targets = counts.targets;
  }
  run_micro_batches(counts.scale(mc_), step);
  update(step, r);
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  tokens_total_ += r.positions;
  r.done = state_.step = step + 1;
  return r;
}

// Forward and backward of this rank's micro-batches. Each micro-batch's gradient is
// computed alone and added to the earlier ones' in order, g = ((g0 + g1) + g2) + ..., so
// N ranks of one micro-batch each (whose gradients the reduce-scatter adds in rank
// order) give the bits of one process with grad_accum = N. Data-parallel, the last
// micro-batch's backward hands each finished layer to the reduce-scatter.
void Trainer::run_micro_batches(const LossScale& scale, int64_t step) {
  const size_t P = model_.table().total, A = micro_.size();
  float* g = model_.grads();
  try {
    for (size_t k = 0; k < A; ++k) {
      model_.backend().zero(g, static_cast<int64_t>(P));
      const bool last = k + 1 == A;
      if (last && (dp_ || A > 1)) model_.set_grads_hook([this, A](int layer) { layer_grads_done(layer, A > 1); });
      part_.reset(mc_.n_modalities());
      model_.run(micro_[k], true, scale, part_);
      sums_.add(part_);
      if (last) break;
      if (k == 0)
        std::copy(g, g + P, accum_.data());
      else
        add_into(accum_.data(), g, P);
    }
    model_.set_grads_hook(nullptr);
  } catch (const NonFiniteLoss& e) {  // this rank's micro-batch: the others may not know
    if (dp_) fail("training diverged at step ", step + 1, " (", e.what(), "); ", kept());
    diverged(step, e.what());
  } catch (const dist::CommError&) {
    throw;
  } catch (const Error& e) {
    fail("step ", step + 1, ": ", e.what(), "; ", kept());
  }
}

// The last micro-batch's gradients of one layer (or, at -1, the rest) are complete:
// add the earlier micro-batches' sum, then hand them to the reduce-scatter.
void Trainer::layer_grads_done(int layer, bool accumulated) {
  float* g = model_.grads();
  if (accumulated)
    for (const auto& r : buckets_)
      if (r.layer == layer) add_into(g + r.lo, accum_.data() + r.lo, r.hi - r.lo);
  if (dp_) dp_->grads_ready(layer, g);
}

// Clipping and AdamW. Data-parallel: the gradients are summed over the ranks first,
// each rank updates its shard, and the shards are gathered into every rank's weights.
void Trainer::update(int64_t step, StepResult& r) {
  if (dp_) {
    dp_->finish_reduce(model_.grads());
    sums_ = dist::sum_over_ranks(world_, sums_);
  }
  r.loss = mc_.has_continuous() ? sums_.mean(mc_) : (r.targets ? sums_.loss / r.targets : 0.0);
  r.lr = lr_at(tc_, step);
  if (!dp_) {
    r.grad_norm = clip_gradients(model_, tc_.grad_clip);
  } else {
    r.grad_norm = dp_->global_norm(model_.grads());
    const double coef = tc_.grad_clip / (r.grad_norm + 1e-6);  // as clip_gradients, on this rank's shard
    if (tc_.grad_clip > 0 && coef < 1.0)
      model_.backend().scale(model_.grads() + dp_->shard().lo, static_cast<int64_t>(dp_->shard().size()),
                             static_cast<float>(coef));
  }
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    diverged(step, "loss ", r.loss, ", grad norm ", r.grad_norm);
  if (!dp_) {
    adamw_step(model_, tc_, r.lr, step + 1);
    return;
  }
  adamw_range(model_, tc_, r.lr, step + 1, dp_->shard().lo, dp_->shard().hi);
  dp_->gather_params(model_.params());
  r.comm = dp_->take_step_stats();
}

// Fills the micro-batches from the data cursor (advancing it); returns their targets.
// Data-parallel, the global batch is grad_accum micro-batches per rank, rank r's after
// rank r-1's, and the cursor advances over all of them. A Transfusion rank also fills
// the other ranks' micro-batches (and drops them) so that its training RNG draws what
// a single process would: τ and noise stay the same at any rank count.
int64_t Trainer::next_batches() {
  int64_t targets = 0;
  const int64_t A = static_cast<int64_t>(micro_.size()), ranks = world_.size();
  for (int64_t g = 0; g < A * ranks; ++g) {
    const bool mine = g / A == world_.rank();
    if (mine || mc_.has_continuous()) {
      TokenBatch& mb = mine ? micro_[static_cast<size_t>(g % A)] : others_;
      data::fill_batch(*data_.train, state_.data_cursor, tc_.batch_size, mb);
      // Transfusion: τ, noise and caption dropout from the training RNG (saved with the state).
      if (mc_.has_continuous()) draw_diffusion(mc_, training_draw(tc_), mb, [&](int64_t) -> Rng& { return rng_; });
      if (mine) targets += data::count_targets(mb);
    }
    state_.data_cursor += tc_.batch_size;
  }
  return targets;
}

// Writes the metrics line of a step, validating on eval steps, then prints the step
// (and validation) lines.
void Trainer::evaluate_and_log(const StepResult& r) {
  json line = {{"step", r.done}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens", r.positions},
               {"ms", r.ms}, {"tokens_per_s", r.positions / (r.ms / 1000.0)}};
  loss_keys(mc_, sums_, "loss", line);
  line["loss"] = r.loss;
  if (dp_) {
    line["comm_ms"] = r.comm.exposed_s * 1000.0;
    line["comm_reduce_ms"] = r.comm.reduce_s * 1000.0;
    line["comm_gather_ms"] = r.comm.gather_s * 1000.0;
    line["comm_floats_sent"] = r.comm.floats_sent;
  }
  const bool do_eval =
      !data_.vals.empty() && ((tc_.eval_every > 0 && r.done % tc_.eval_every == 0) || r.done == tc_.steps);
  std::string val_text;
  if (do_eval) line.update(evaluate_val(val_text));
  if (!world_.root()) return;
  write_metrics_line(line);
  if (r.done % tc_.log_every == 0 || r.done == tc_.steps || r.done == start_step_ + 1) {
    std::printf("step %6lld/%lld | loss %.4f |%s | lr %.2e | gnorm %.3f | %.1f ms | %.0f tok/s\n",
                static_cast<long long>(r.done), static_cast<long long>(tc_.steps), r.loss,
                modality_losses(mc_, sums_).c_str(), r.lr, r.grad_norm, r.ms, r.positions / (r.ms / 1000.0));
    flush_stdout();
  }
  if (do_eval) {
    std::printf("  val   step %lld | loss %.4f |%s\n%s", static_cast<long long>(r.done), val_.mean(mc_),
                modality_losses(mc_, val_).c_str(), val_text.c_str());
    flush_stdout();
  }
}

// Validation losses over every validation set (into val_), as metrics keys; `text`
// gets one printed line per named set.
json Trainer::evaluate_val(std::string& text) {
  json keys = json::object();
  val_.reset(mc_.n_modalities());
  const bool named = data_.vals.size() > 1 || !data_.vals[0].name.empty();
  for (const auto& v : data_.vals) {
    const LossSums part = evaluate(model_, *v.src, tc_.batch_size, tc_.eval_batches * tc_.batch_size, eval_scratch_,
                                   -1, tc_.caption_noise_max, &world_);
    val_.add(part);
    if (!named) continue;
    loss_keys(mc_, part, "val/" + v.name + "/loss", keys);
    text += cat("  val   ", v.name, " | loss ", fmt("%.4f", part.mean(mc_)), " |", modality_losses(mc_, part), "\n");
  }
  loss_keys(mc_, val_, "val_loss", keys);
  // Transfusion: the diffusion loss at fixed steps with fixed noise, comparable across runs.
  if (mc_.has_continuous()) {
    std::string buckets;
    for (const int64_t tau : kDiffusionBuckets) {
      if (tau >= mc_.diffusion_steps) continue;
      LossSums at;
      at.reset(mc_.n_modalities());
      for (const auto& v : data_.vals)
        at.add(evaluate(model_, *v.src, tc_.batch_size, tc_.eval_batches * tc_.batch_size, eval_scratch_,
                        static_cast<int32_t>(tau), tc_.caption_noise_max, &world_));
      if (at.diffusion_values == 0) continue;
      keys[cat("val_loss/diffusion@", tau)] = at.diffusion_mean();
      buckets += cat(" t=", tau, " ", fmt("%.4f", at.diffusion_mean()));
    }
    if (!buckets.empty()) text += cat("  val   diffusion at fixed steps |", buckets, "\n");
  }
  return keys;
}

void Trainer::write_metrics_line(const json& line) {
  const std::string text = line.dump() + "\n";
  if (std::fputs(text.c_str(), metrics_.get()) < 0 || std::fflush(metrics_.get()) != 0)
    fail(paths_.metrics, ": write failed (", std::strerror(errno), "); ", kept());
}

// Saves when due (save_every, the last step, --stop-at, a signal, a closed stdout);
// returns the exit status when the session stops here.
std::optional<int> Trainer::checkpoint_or_stop(int64_t done) {
  const bool stop = opt_.stop_at > 0 && done == opt_.stop_at;
  int sig = g_signal.load();
  if (dp_) {  // every rank stops after the same step: a signal to any rank, or rank 0's closed stdout
    int mine[2] = {sig, stdout_closed_ ? 1 : 0};
    std::vector<int> all(2 * static_cast<size_t>(world_.size()));
    world_.allgather_bytes(mine, sizeof mine, all.data(), "step: stop flags");
    sig = 0;
    for (int k = 0; k < world_.size() && !sig; ++k) sig = all[2 * k];
    stdout_closed_ = all[1] != 0;
  }
  if ((tc_.save_every > 0 && done % tc_.save_every == 0) || done == tc_.steps || stop || sig || stdout_closed_)
    save_checkpoint(done);
  if (stdout_closed_ && done < tc_.steps) {
    if (world_.root())
      std::fprintf(stderr, "stdout was closed (broken pipe) after step %lld; checkpoint saved in %s (continue with "
                 "--resume; metrics.jsonl has every step)\n", static_cast<long long>(done), opt_.out_dir.c_str());
    return 130;
  }
  if (sig) {
    if (world_.root())
      std::fprintf(stderr, "interrupted (signal %d) after step %lld; checkpoint saved in %s (continue with --resume)\n",
                 sig, static_cast<long long>(done), opt_.out_dir.c_str());
    return 130;
  }
  if (stop) {
    if (world_.root())
      std::fprintf(stderr, "stopped after step %lld as asked; continue with --resume\n", static_cast<long long>(done));
    return 0;
  }
  return std::nullopt;
}

// MoE: the routing thresholds generation uses (model.hpp), calibrated on the
// validation rows the evaluations use, saved with the weights. Forward only: nothing
// of the training state changes.
void Trainer::calibrate_moe_thresholds() {
  model_.begin_moe_calibration();
  for (const auto& v : data_.vals) evaluate(model_, *v.src, tc_.batch_size, tc_.eval_batches * tc_.batch_size, eval_scratch_);
  model_.set_moe_thresholds(model_.end_moe_calibration());
}

void Trainer::save_checkpoint(int64_t step) {
  state_.step = step;
  state_.config_json = run_json_;
  state_.rng_state = rng_.state();
  if (dp_) {  // rank 0 writes every rank's moment shards: the checkpoint loads at any rank count
    std::vector<float> m(world_.root() ? model_.table().total : 0), v(m.size());
    world_.gatherv(model_.adam_m(), dp_->shard_counts(), dp_->shard_displs(), m.data(), "checkpoint: AdamW moments");
    world_.gatherv(model_.adam_v(), dp_->shard_counts(), dp_->shard_displs(), v.data(), "checkpoint: AdamW moments");
    std::string error;
    if (world_.root()) {
      try {
        if (mc_.has_moe()) calibrate_moe_thresholds();
        write_checkpoint(opt_.out_dir, model_, state_, {m.data(), v.data()});
      } catch (const Error& e) {
        error = cat(e.what(), "; ", kept());
      }
    }
    error = world_.broadcast_string(error, "checkpoint: rank 0's save");
    if (!error.empty()) throw SharedError(error);
    saved_step_ = step;
    return;
  }
  if (mc_.has_moe()) calibrate_moe_thresholds();
  try {
    write_checkpoint(opt_.out_dir, model_, state_);
  } catch (const Error& e) {
    fail(e.what(), "; ", kept());
  }
  saved_step_ = step;
}

int Trainer::finish() const {
  if (!world_.root()) return 0;
  if (start_step_ >= tc_.steps)
    std::fprintf(stderr, "nothing to do: the run already finished %lld steps\n", static_cast<long long>(tc_.steps));
  std::fprintf(stderr, "done: %lld tokens trained this session; model in %s\n", static_cast<long long>(tokens_total_),
               paths_.model.c_str());
  return 0;
}

// What a failure leaves the user, for its error line.
std::string Trainer::kept() const {
  return saved_step_ >= 0 ? cat("the checkpoint of step ", saved_step_, " in ", opt_.out_dir, " is kept")
                          : std::string("no checkpoint was saved yet");
}


// One process: the run directory is this process's alone.
int train_single(const TrainOptions& opt, dist::World& world) {
  const RunPaths paths(opt.out_dir);
  check_out_dir(opt);
  // One process per run directory, held until this function returns (or the kernel
  // drops it when the process dies). A fresh run refused before it starts leaves
  // nothing behind (see DirLock).
  io::DirLock lock(opt.out_dir, opt.resume ? "mot train --resume" : "mot train",
                   "wait for it to finish (or stop it with Ctrl-C: it saves a checkpoint), or choose another --out");
  remove_stale_checkpoint_files(opt.out_dir);
  const RunStart start = opt.resume ? resume_run(opt, paths) : new_run(opt, paths);
  set_threads(static_cast<int>(start.rc.train.threads));
  TrainData data = build_data(start.rc);
  Model model = make_model(start.rc, data.row_len, world, opt.device);
  Trainer trainer(opt, start.rc, data, model, world);
  if (start.resume_from)
    trainer.resume(*start.resume_from);
  else
    trainer.start_new();
  trainer.open_metrics();
  lock.keep();  // the run exists from here on
  return trainer.train();
}

// Rank 0's part of a setup step, whose failure every rank then shares.
template <class F>
void on_root_shared(dist::World& world, const char* what, F&& f) {
  std::string error;
  if (world.root()) {
    try {
      f();
    } catch (const dist::CommError&) {
      throw;
    } catch (const Error& e) {
      error = e.what();
    }
  }
  error = world.broadcast_string(error, what);
  if (!error.empty()) throw SharedError(error);
}

// Data-parallel (mpirun/srun): rank 0 owns the run directory (lock, config, metrics,
// checkpoints) and hands the others the resolved config and its starting state; every
// rank reads the training data from the same path.
int train_parallel(const TrainOptions& opt, dist::World& world) {
  const RunPaths paths(opt.out_dir);
  std::optional<io::DirLock> lock;
  RunStart start;
  on_root_shared(world, "setup", [&] {
    check_out_dir(opt);
    lock.emplace(opt.out_dir, opt.resume ? "mot train --resume" : "mot train",
                 "wait for it to finish (or stop it with Ctrl-C: it saves a checkpoint), or choose another --out");
    remove_stale_checkpoint_files(opt.out_dir);
    start = opt.resume ? resume_run(opt, paths) : new_run(opt, paths);
  });
  const std::string toml = world.broadcast_string(world.root() ? start.rc.to_toml() : "", "setup: config");
  if (!world.root()) start.rc = run_config_from_toml_text(toml, "rank 0's run config", {}, "");
  set_threads(static_cast<int>(start.rc.train.threads));
  TrainData data = build_data(start.rc);
  Model model = make_model(start.rc, data.row_len, world, opt.device);
  Trainer trainer(opt, start.rc, data, model, world);
  on_root_shared(world, "setup: start", [&] {
    if (start.resume_from)
      trainer.resume(*start.resume_from);
    else
      trainer.start_new();
    trainer.open_metrics();
  });
  trainer.share_start();
  if (lock) lock->keep();
  return trainer.train();
}

}  // namespace

int run_training(const TrainOptions& opt) {
  if (opt.out_dir.empty()) fail("--out RUN/ is required");
  install_signal_handlers();
  die_with_parent_if_asked();
  dist::World& world = dist::World::join();
  if (!world.parallel()) return train_single(opt, world);
  world.set_timeout(opt.comm_timeout);
  world.set_interrupt_probe([] { return g_signal.load(); });
  int code = 2;
  try {
    code = train_parallel(opt, world);
  } catch (const SharedError& e) {  // every rank is here: rank 0 says why, all finalize
    if (world.root()) std::fprintf(stderr, "mot: error: %s\n", e.what());
  } catch (const std::exception& e) {  // this rank alone: the others cannot follow, end the job
    std::fprintf(stderr, "mot: error: %s%s\n", dynamic_cast<const dist::CommError*>(&e) ? "" : dist::rank_prefix().c_str(),
                 e.what());
    std::fflush(stderr);
    world.abort(2);
  }
  world.finalize();
  return code;
}

}  // namespace mot
