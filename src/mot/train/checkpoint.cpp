#include "mot/train/checkpoint.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/safetensors.hpp"

namespace mot {

namespace {

std::map<std::string, std::string> model_meta(const Model& m, const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = extra;
  meta["format"] = "mot";
  meta["format_version"] = "1";
  meta["config"] = m.config().to_json().dump();
  if (!m.moe_thresholds().empty()) {
    nlohmann::json thr = nlohmann::json::array();  // +inf (an expert no pool reached) as null
    for (float x : m.moe_thresholds()) thr.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
    meta["moe_thresholds"] = thr.dump();
  }
  return meta;
}

// The MoE routing thresholds of a model file's metadata (model.hpp), if any.
void load_moe_thresholds(const std::string& path, const std::map<std::string, std::string>& meta, Model& model) {
  auto it = meta.find("moe_thresholds");
  if (it == meta.end()) return;
  std::vector<float> thr;
  try {
    const nlohmann::json j = nlohmann::json::parse(it->second);
    if (!j.is_array()) throw std::runtime_error("not an array");
    for (const auto& x : j) {
      if (x.is_null()) thr.push_back(std::numeric_limits<float>::infinity());
      else if (x.is_number() && std::isfinite(x.get<double>())) thr.push_back(x.get<float>());
      else throw std::runtime_error("not a number");
    }
  } catch (const std::exception&) {
    fail(path, ": metadata moe_thresholds is not a JSON array of numbers");
  }
  if (static_cast<int64_t>(thr.size()) != model.moe_threshold_count())
    fail(path, ": metadata moe_thresholds holds ", thr.size(), " values, the model has ", model.moe_threshold_count());
  model.set_moe_thresholds(std::move(thr));
}

// rng_state in state.safetensors' metadata: the four 64-bit words as 16 lowercase hex
// digits each, separated by single spaces (metadata values are strings, like step).
std::string rng_text(const std::array<uint64_t, 4>& words) {
  char buf[4 * 17];
  std::snprintf(buf, sizeof buf, "%016llx %016llx %016llx %016llx", static_cast<unsigned long long>(words[0]),
                static_cast<unsigned long long>(words[1]), static_cast<unsigned long long>(words[2]),
                static_cast<unsigned long long>(words[3]));
  return buf;
}

std::array<uint64_t, 4> rng_words(const std::string& text, const std::string& path) {
  std::array<uint64_t, 4> words{};
  bool ok = text.size() == 4 * 17 - 1;
  for (size_t i = 0; ok && i < text.size(); ++i) {
    const char c = text[i];
    if (i % 17 == 16) {
      ok = c == ' ';
      continue;
    }
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    ok = v >= 0;
    words[i / 17] = words[i / 17] << 4 | static_cast<uint64_t>(v & 15);
  }
  if (!ok) fail(path, ": metadata rng_state '", text, "' is not four 16-digit hex words (corrupt training state)");
  return words;
}

}  // namespace

ModelConfig read_model_config(const std::string& path) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const auto& meta = f.metadata();
  auto it = meta.find("config");
  if (it == meta.end()) fail(path, ": no model config in the metadata (__metadata__.config); not a mot model file");
  if (auto v = meta.find("format_version"); v != meta.end() && v->second != "1")
    fail(path, ": format_version ", v->second, " is not supported by this engine (it reads version 1)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception&) {
    fail(path, ": __metadata__.config is not valid JSON");
  }
  return ModelConfig::from_json(j, path + ": config");
}

std::string model_file_step(const std::string& path) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  auto it = f.metadata().find("step");
  return it == f.metadata().end() ? "" : it->second;
}

void load_model_weights(const std::string& path, Model& model) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const ParamTable& t = model.table();
  for (const auto& e : t.entries) {
    const io::TensorInfo* ti = f.find(e.name);
    if (!ti) fail(path, ": missing tensor '", e.name, "'");
    if (ti->shape != e.shape) {
      std::string got, want;
      for (auto s : ti->shape) got += cat(got.empty() ? "" : ", ", s);
      for (auto s : e.shape) want += cat(want.empty() ? "" : ", ", s);
      fail(path, ": tensor '", e.name, "' has shape [", got, "], expected [", want, "]");
    }
    f.read_f32(*ti, model.params() + e.offset);
  }
  for (const auto& ti : f.tensors())
    if (!t.find(ti.name)) fail(path, ": unexpected tensor '", ti.name, "' (not part of this model's config)");
  load_moe_thresholds(path, f.metadata(), model);
  // A non-finite weight would only show up later as a NaN loss; say it now.
  for (const auto& e : t.entries) {
    const float* w = model.params() + e.offset;
    for (size_t i = 0; i < e.numel; ++i)
      if (!std::isfinite(w[i])) fail(path, ": tensor '", e.name, "' holds a non-finite value");
  }
}

void save_like_params(const std::string& path, const Model& model, const float* flat,
                      const std::map<std::string, std::string>& extra_meta) {
  std::vector<io::TensorToWrite> ts;
  for (const auto& e : model.table().entries) ts.push_back({e.name, io::DType::F32, e.shape, flat + e.offset});
  io::write_safetensors(path, ts, model_meta(model, extra_meta));
}

void save_model(const std::string& path, Model& model, const std::map<std::string, std::string>& extra_meta) {
  save_like_params(path, model, model.params(), extra_meta);
}

void save_train_state(const std::string& path, Model& model, const TrainState& s, FullMoments moments) {
  const int64_t P = static_cast<int64_t>(model.table().total);
  if (!s.rng_state) fail(path, ": internal error: no RNG state to save");
  if (!moments.m && model.moment_floats() != model.table().total) fail("internal: saving a sharded optimizer state");
  std::vector<io::TensorToWrite> ts = {{"adam_m", io::DType::F32, {P}, moments.m ? moments.m : model.adam_m()},
                                       {"adam_v", io::DType::F32, {P}, moments.v ? moments.v : model.adam_v()}};
  std::map<std::string, std::string> meta = {{"format", "mot-train-state"},
                                             {"format_version", "1"},
                                             {"step", std::to_string(s.step)},
                                             {"data_cursor", std::to_string(s.data_cursor)},
                                             {"run_config", s.config_json},
                                             {"rng_state", rng_text(*s.rng_state)}};
  io::write_safetensors(path, ts, meta);
}

TrainState load_train_state(const std::string& path, Model& model, FullMoments into) {
  if (!into.m && model.moment_floats() != model.table().total) fail("internal: loading into a sharded optimizer state");
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const auto& meta = f.metadata();
  auto get = [&](const char* k) {
    auto it = meta.find(k);
    if (it == meta.end()) fail(path, ": training state lacks '", k, "'");
    return it->second;
  };
  if (get("format") != "mot-train-state") fail(path, ": not a mot training state file");
  TrainState s;
  try {
    s.step = std::stoll(get("step"));
    s.data_cursor = std::stoull(get("data_cursor"));
  } catch (const std::exception&) {
    fail(path, ": corrupt step or data_cursor in the training state");
  }
  s.config_json = get("run_config");
  const int64_t P = static_cast<int64_t>(model.table().total);
  for (auto [name, dst] : {std::pair{"adam_m", into.m ? into.m : model.adam_m()},
                           std::pair{"adam_v", into.v ? into.v : model.adam_v()}}) {
    const io::TensorInfo* ti = f.find(name);
    if (!ti || ti->shape != std::vector<int64_t>{P} || ti->dtype != io::DType::F32)
      fail(path, ": tensor '", name, "' missing or not F32 [", P, "]");
    f.read_f32(*ti, dst);
  }
  const auto rng = f.metadata().find("rng_state");
  if (rng != f.metadata().end()) s.rng_state = rng_words(rng->second, path);  // older state files lack it
  return s;
}

namespace fs = std::filesystem;

namespace {

constexpr const char* kCheckpoints = "/checkpoints";

std::string step_dir_name(int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// The step of a committed checkpoint directory name ("step-<digits>" exactly), or -1.
int64_t parse_step_dir(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5 || name.size() > 5 + 18) return -1;
  const std::string digits = name.substr(5);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

Checkpoint at(const std::string& dir, int64_t step) {
  return {step, dir, dir + "/model.safetensors", dir + "/state.safetensors", false};
}

// Publishes `target` at `link_path` atomically: a hard link under a temporary name,
// renamed over the old one. Filesystems without hard links get a copy instead.
void publish(const std::string& target, const std::string& link_path) {
  const std::string tmp = io::temporary_name(link_path);
  ::unlink(tmp.c_str());
  if (::link(target.c_str(), tmp.c_str()) != 0) {
    std::error_code ec;
    fs::copy_file(target, tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      ::unlink(tmp.c_str());
      fail(link_path, ": cannot publish the latest model: ", ec.message());
    }
  }
  if (::rename(tmp.c_str(), link_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(link_path, ": rename failed: ", std::strerror(err));
  }
}

// Removes a directory so that a kill midway never leaves a half-deleted checkpoint
// under a committed name: rename it to a trash name first (atomic), then delete.
void remove_dir_safely(const std::string& dir) {
  const std::string trash = io::trash_name(dir);
  std::error_code ec;
  if (::rename(dir.c_str(), trash.c_str()) != 0) return;
  fs::remove_all(trash, ec);
}

// Only once `kept` is committed and published do older checkpoints go.
void prune_older_checkpoints(const std::string& run_dir, const Checkpoint& kept) {
  std::error_code ec;
  for (fs::directory_iterator it(run_dir + kCheckpoints, ec), end; !ec && it != end; it.increment(ec)) {
    const int64_t step = parse_step_dir(it->path().filename().string());
    if (step >= 0 && step != kept.step) remove_dir_safely(it->path().string());
  }
  ::unlink((run_dir + "/state.safetensors").c_str());  // a legacy pair's state, now superseded
}

}  // namespace

void crash_point(const char* name) {
  static const char* wanted = std::getenv("MOT_CRASH_POINT");
  if (wanted && std::strcmp(wanted, name) == 0) ::kill(::getpid(), SIGKILL);
}

std::optional<Checkpoint> latest_checkpoint(const std::string& run_dir) {
  const std::string root = run_dir + kCheckpoints;
  std::optional<Checkpoint> best;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const int64_t step = parse_step_dir(it->path().filename().string());
    if (step < 0 || !it->is_directory()) continue;
    if (!best || step > best->step) best = at(it->path().string(), step);
  }
  if (best) return best;
  Checkpoint legacy = at(run_dir, -1);  // its step is in its files
  legacy.legacy = true;
  if (fs::exists(legacy.state) && fs::exists(legacy.model)) return legacy;
  return std::nullopt;
}

Checkpoint write_checkpoint(const std::string& run_dir, Model& model, const TrainState& s, FullMoments moments) {
  const std::string root = run_dir + kCheckpoints;
  std::error_code ec;
  if (!fs::is_directory(root)) {
    fs::create_directories(root, ec);
    if (ec) fail(root, ": cannot create: ", ec.message());
    io::sync_directory(run_dir);
  }
  const Checkpoint done = at(root + "/" + step_dir_name(s.step), s.step);
  const std::string tmp = io::temporary_name(done.dir);
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec) fail(tmp, ": cannot create: ", ec.message());
  try {
    save_model(tmp + "/model.safetensors", model, {{"step", std::to_string(s.step)}});
    crash_point("checkpoint-model-written");
    save_train_state(tmp + "/state.safetensors", model, s, moments);
    crash_point("checkpoint-state-written");
  } catch (...) {
    fs::remove_all(tmp, ec);  // give a full disk its space back at once
    throw;
  }
  // Resuming always starts from the newest checkpoint, so this step cannot be
  // committed already; if it somehow is, keep that complete one rather than open a
  // window with no checkpoint at all.
  if (fs::exists(done.dir)) {
    fs::remove_all(tmp, ec);
  } else if (::rename(tmp.c_str(), done.dir.c_str()) != 0) {
    const int err = errno;
    fs::remove_all(tmp, ec);
    fail(done.dir, ": cannot commit the checkpoint: ", std::strerror(err));
  }
  io::sync_directory(root);
  crash_point("checkpoint-committed");
  publish(done.model, run_dir + "/model.safetensors");
  io::sync_directory(run_dir);
  crash_point("checkpoint-published");
  prune_older_checkpoints(run_dir, done);
  return done;
}

void finish_interrupted_commit(const std::string& run_dir, const Checkpoint& newest) {
  if (newest.legacy) return;  // a legacy pair is its own publication
  const std::string published = run_dir + "/model.safetensors";
  struct stat a{}, b{};
  const bool same = ::stat(newest.model.c_str(), &a) == 0 && ::stat(published.c_str(), &b) == 0 &&
                    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
  if (!same) {  // killed between commit and publish (or published by copy: copying again is harmless)
    publish(newest.model, published);
    io::sync_directory(run_dir);
  }
  prune_older_checkpoints(run_dir, newest);
}

void remove_stale_checkpoint_files(const std::string& run_dir) {
  io::remove_stale_temporaries(run_dir, true);
  io::remove_stale_temporaries(run_dir + kCheckpoints, true);
}

}  // namespace mot
