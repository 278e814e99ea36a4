// Model and training configuration: SPEC section 5 keys ([model]) plus the engine's
// own [train] and [data] tables. TOML files and checkpoint metadata (JSON) go
// through one strict parser: unknown keys, wrong types and inconsistent values are
// mot::Error with the key named.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/core/checked.hpp"

namespace mot {

// A discrete modality owns the token ids [begin, end); a continuous one (SPEC 2b) carries
// latent vectors: images of image_size x image_size x channels cut into patch x patch
// tiles, one position per tile of latent_dim() = patch² · channels values.
struct Modality {
  std::string name;
  int64_t begin = 0, end = 0;  // discrete only
  bool continuous = false;
  int64_t patch = 0, channels = 0, image_size = 0;  // continuous only
  int64_t latent_dim() const { return patch * patch * channels; }
  int64_t patches_per_image() const { return patch ? (image_size / patch) * (image_size / patch) : 0; }
};

enum class Component { Attention = 0, Ffn = 1, Norm = 2 };
constexpr int kComponents = 3;

struct ModelConfig {
  std::string arch;  // dense | mot | moe
  int64_t dim = 0, n_layers = 0, n_heads = 0, ffn_hidden = 0, vocab_size = 0;
  int64_t max_seq_len = 4096;
  int64_t bos_id = -1;
  std::string norm_position = "pre";
  bool qk_norm = false;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool untie[kComponents] = {false, false, false};
  bool doc_mask = false;
  int64_t n_experts = 4;
  std::vector<std::string> moe_modalities;
  std::vector<Modality> modalities;
  std::map<std::string, std::string> share;  // sharing modality -> owner
  int64_t diffusion_steps = 1000;  // T of the cosine schedule (SPEC 2b)
  double diffusion_weight = 5.0;   // λ: loss = loss/lm + λ · loss/diffusion

  // Transfusion (SPEC 2b): the first continuous modality, -1 if none.
  int continuous_modality() const;
  bool has_continuous() const { return continuous_modality() >= 0; }
  int64_t latent_dim() const;  // of the continuous modality, 0 if none

  int64_t head_dim() const { return dim / n_heads; }
  int n_modalities() const { return static_cast<int>(modalities.size()); }
  bool post_norm() const { return norm_position == "post"; }
  int modality_of_token(int64_t tok) const;  // -1 if outside every range
  int modality_index(const std::string& name) const;  // -1 if unknown

  // Which weight copy modality m uses for a component: 0 when tied; when untied the
  // index among the modalities that own weights (a shared modality uses its owner's).
  int copy_of(Component c, int m) const;
  int n_copies(Component c) const;
  std::string copy_name(Component c, int copy) const;  // modality name of that copy
  // MoE (SPEC section 2): whether FFN weight copy `copy` is a mixture of n_experts
  // experts with a router (every copy with arch = "moe"; the copies of moe_modalities
  // in the MoT+MoE hybrid) rather than one SwiGLU.
  bool ffn_is_moe(int copy) const;
  bool has_moe() const { return arch == "moe" || !moe_modalities.empty(); }

  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
  void validate(const std::string& where) const;
};

struct TrainConfig {
  int64_t seq_len = 256, batch_size = 8, grad_accum = 1, steps = 1000;
  // Transfusion (SPEC 2b): captioning images are noised with τ < caption_noise_max;
  // a caption->image document loses its caption with probability cfg_dropout.
  int64_t caption_noise_max = 500;
  double cfg_dropout = 0.1;
  double lr = 3e-4, min_lr = 1.5e-5;
  int64_t warmup_steps = 100;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
  int64_t seed = 1;
  int64_t log_every = 10, eval_every = 100, eval_batches = 8, save_every = 500;
  int64_t threads = 0;  // 0: all cores
  std::string dtype = "fp32";  // GEMM compute precision: fp32 | bf16 (master weights stay fp32)

  static TrainConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

struct DataConfig {
  std::string path;  // shard directory or .jsonl
  std::string val_path;  // optional separate validation data
  static DataConfig from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

struct RunConfig {
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  nlohmann::json to_json() const;
  std::string to_toml() const;
};

// Parameter (float) and tensor counts of build_param_table(c) (params.hpp), in closed
// form: no table is built. !ok() when a count overflows 64-bit integers; validate()
// refuses such a config.
Checked param_count(const ModelConfig& c);
Checked tensor_count(const ModelConfig& c);

// Reads a TOML config, applies `key=value` overrides ("model.dim=64",
// "train.lr=1e-3"; the value is parsed as TOML, else taken as a string), validates.
// `data_path` (if not empty) replaces [data] path. Keys the [model] table leaves out
// among vocab_size, bos_id and modalities are taken from the data directory's
// vocab.json when it has one (written by `mot data synth`).
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides,
                          const std::string& data_path = "");
RunConfig run_config_from_toml_text(const std::string& text, const std::string& origin,
                                    const std::vector<std::string>& overrides, const std::string& data_path = "");

}  // namespace mot
