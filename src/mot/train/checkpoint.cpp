#include "mot/train/checkpoint.hpp"

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/io/safetensors.hpp"

namespace mot {

namespace {

std::map<std::string, std::string> model_meta(const Model& m, const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> meta = extra;
  meta["format"] = "mot";
  meta["format_version"] = "1";
  meta["config"] = m.config().to_json().dump();
  return meta;
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

void save_train_state(const std::string& path, Model& model, const TrainState& s) {
  const int64_t P = static_cast<int64_t>(model.table().total);
  std::vector<io::TensorToWrite> ts = {{"adam_m", io::DType::F32, {P}, model.adam_m()},
                                       {"adam_v", io::DType::F32, {P}, model.adam_v()}};
  std::map<std::string, std::string> meta = {{"format", "mot-train-state"},
                                             {"format_version", "1"},
                                             {"step", std::to_string(s.step)},
                                             {"data_cursor", std::to_string(s.data_cursor)},
                                             {"run_config", s.config_json}};
  io::write_safetensors(path, ts, meta);
}

TrainState load_train_state(const std::string& path, Model& model) {
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
  for (auto [name, dst] : {std::pair{"adam_m", model.adam_m()}, std::pair{"adam_v", model.adam_v()}}) {
    const io::TensorInfo* ti = f.find(name);
    if (!ti || ti->shape != std::vector<int64_t>{P} || ti->dtype != io::DType::F32)
      fail(path, ": tensor '", name, "' missing or not F32 [", P, "]");
    f.read_f32(*ti, dst);
  }
  return s;
}

}  // namespace mot
