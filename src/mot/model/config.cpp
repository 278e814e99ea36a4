#include "mot/model/config.hpp"

#include "mot/data/format/vocab.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "mot/core/checked.hpp"
#include "mot/core/error.hpp"

namespace mot {

using json = nlohmann::json;

namespace {

const char* kComponentNames[kComponents] = {"attention", "ffn", "norm"};
// More OpenMP threads than this is a typo, not a machine.
constexpr int64_t kMaxThreads = 4096;

// Strict typed access to a JSON object produced from TOML or checkpoint metadata.
class Reader {
 public:
  Reader(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) fail(where_, ": expected a table");
  }
  bool has(const char* k) { seen_.insert(k); return j_.contains(k); }
  int64_t integer(const char* k, int64_t dflt) {
    if (!has(k)) return dflt;
    const json& v = j_.at(k);
    if (!v.is_number_integer()) fail(where_, ".", k, ": expected an integer, got ", v.dump());
    return v.get<int64_t>();
  }
  double number(const char* k, double dflt) {
    if (!has(k)) return dflt;
    const json& v = j_.at(k);
    if (!v.is_number()) fail(where_, ".", k, ": expected a number, got ", v.dump());
    return v.get<double>();
  }
  bool boolean(const char* k, bool dflt) {
    if (!has(k)) return dflt;
    const json& v = j_.at(k);
    if (!v.is_boolean()) fail(where_, ".", k, ": expected true or false, got ", v.dump());
    return v.get<bool>();
  }
  std::string string(const char* k, const std::string& dflt) {
    if (!has(k)) return dflt;
    const json& v = j_.at(k);
    if (!v.is_string()) fail(where_, ".", k, ": expected a string, got ", v.dump());
    return v.get<std::string>();
  }
  std::vector<std::string> strings(const char* k) {
    std::vector<std::string> out;
    if (!has(k)) return out;
    const json& v = j_.at(k);
    if (!v.is_array()) fail(where_, ".", k, ": expected a list of strings, got ", v.dump());
    for (const json& e : v) {
      if (!e.is_string()) fail(where_, ".", k, ": expected a list of strings, got ", v.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  const json& raw(const char* k) { seen_.insert(k); return j_.at(k); }
  void reject_unknown() {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!seen_.count(it.key())) fail(where_, ": unknown key '", it.key(), "'");
  }

 private:
  const json& j_;
  std::string where_;
  std::set<std::string> seen_;
};

bool valid_name(const std::string& s) {
  static const std::regex re("[a-z][a-z0-9_]*");
  return std::regex_match(s, re);
}

json toml_to_json(const toml::node& n) {
  if (auto t = n.as_table()) {
    json o = json::object();
    for (auto&& [k, v] : *t) o[std::string(k.str())] = toml_to_json(v);
    return o;
  }
  if (auto a = n.as_array()) {
    json o = json::array();
    for (auto&& v : *a) o.push_back(toml_to_json(v));
    return o;
  }
  if (auto v = n.as_integer()) return v->get();
  if (auto v = n.as_floating_point()) return v->get();
  if (auto v = n.as_boolean()) return v->get();
  if (auto v = n.as_string()) return v->get();
  fail("config: unsupported TOML value (dates and times are not config values)");
}

void apply_override(toml::table& root, const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set ", kv, ": expected key=value (e.g. train.lr=1e-3)");
  std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  auto dot = key.find('.');
  if (dot == std::string::npos) fail("--set ", kv, ": key must be table.key (model.*, train.* or data.*)");
  std::string table = key.substr(0, dot), field = key.substr(dot + 1);
  if (table != "model" && table != "train" && table != "data")
    fail("--set ", kv, ": unknown table '", table, "' (expected model, train or data)");
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", value}};  // bare words are strings: model.arch=dense
  }
  if (!root.contains(table)) root.insert(table, toml::table{});
  auto* t = root[table].as_table();
  if (!t) fail("config: '", table, "' is not a table");
  t->insert_or_assign(field, *parsed["v"].node());
}

}  // namespace

int ModelConfig::modality_of_token(int64_t tok) const {
  for (int m = 0; m < n_modalities(); ++m)
    if (!modalities[m].continuous && tok >= modalities[m].begin && tok < modalities[m].end) return m;
  return -1;
}

int ModelConfig::continuous_modality() const {
  for (int m = 0; m < n_modalities(); ++m)
    if (modalities[m].continuous) return m;
  return -1;
}

int64_t ModelConfig::latent_dim() const {
  const int m = continuous_modality();
  return m < 0 ? 0 : modalities[m].latent_dim();
}

int ModelConfig::modality_index(const std::string& name) const {
  for (int m = 0; m < n_modalities(); ++m)
    if (modalities[m].name == name) return m;
  return -1;
}

int ModelConfig::copy_of(Component c, int m) const {
  if (!untie[static_cast<int>(c)]) return 0;
  std::string owner = modalities[m].name;
  if (auto it = share.find(owner); it != share.end()) owner = it->second;
  int copy = 0;
  for (const auto& mod : modalities) {
    if (share.count(mod.name)) continue;
    if (mod.name == owner) return copy;
    ++copy;
  }
  fail("internal: modality without an owner");
}

int ModelConfig::n_copies(Component c) const {
  if (!untie[static_cast<int>(c)]) return 1;
  return n_modalities() - static_cast<int>(share.size());
}

std::string ModelConfig::copy_name(Component c, int copy) const {
  if (!untie[static_cast<int>(c)]) return "";
  int k = 0;
  for (const auto& mod : modalities) {
    if (share.count(mod.name)) continue;
    if (k++ == copy) return mod.name;
  }
  fail("internal: bad weight copy index");
}

bool ModelConfig::ffn_is_moe(int copy) const {
  if (arch == "moe") return true;
  if (moe_modalities.empty()) return false;
  const std::string name = copy_name(Component::Ffn, copy);
  for (const auto& m : moe_modalities)
    if (m == name) return true;
  return false;
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& where) {
  Reader r(j, where);
  ModelConfig c;
  if (!r.has("arch")) fail(where, ": missing required key 'arch' (dense, mot or moe)");
  c.arch = r.string("arch", "");
  c.dim = r.integer("dim", 0);
  c.n_layers = r.integer("n_layers", 0);
  c.n_heads = r.integer("n_heads", 0);
  c.vocab_size = r.integer("vocab_size", 0);
  // Default: ceil(8d/3) rounded up to a multiple of 256.
  const Checked d8 = Checked(c.dim) * Checked(8) + Checked(2);
  const Checked dflt = d8.ok() ? Checked(d8.value() / 3).round_up(256) : d8;
  if (!r.has("ffn_hidden") && c.dim > 0 && !dflt.ok())
    fail(where, ".dim: ", c.dim, " is too large (its default ffn_hidden, 8*dim/3, overflows 64-bit integers)");
  c.ffn_hidden = r.integer("ffn_hidden", dflt.ok() ? dflt.value() : 0);
  c.max_seq_len = r.integer("max_seq_len", 4096);
  c.bos_id = r.integer("bos_id", -1);
  c.norm_position = r.string("norm_position", "pre");
  c.qk_norm = r.boolean("qk_norm", false);
  c.norm_eps = r.number("norm_eps", 1e-5);
  c.rope_theta = r.number("rope_theta", 10000.0);
  c.doc_mask = r.boolean("doc_mask", false);
  c.n_experts = r.integer("n_experts", 4);
  c.moe_modalities = r.strings("moe_modalities");
  c.diffusion_steps = r.integer("diffusion_steps", 1000);
  c.diffusion_weight = r.number("diffusion_weight", 5.0);
  if (r.has("untie")) {
    for (const auto& u : r.strings("untie")) {
      int k = -1;
      for (int i = 0; i < kComponents; ++i)
        if (u == kComponentNames[i]) k = i;
      if (k < 0) fail(where, ".untie: unknown component '", u, "' (expected attention, ffn or norm)");
      c.untie[k] = true;
    }
  } else if (c.arch == "mot") {
    c.untie[0] = c.untie[1] = c.untie[2] = true;
  }
  if (!r.has("modalities"))
    fail(where, ": missing required key 'modalities' (set it, or point [data] path at a data directory with vocab.json)");
  const json& mods = r.raw("modalities");
  if (!mods.is_array() || mods.empty()) fail(where, ".modalities: expected a non-empty list of {name, begin, end}");
  for (size_t i = 0; i < mods.size(); ++i) {
    Reader mr(mods[i], cat(where, ".modalities[", i, "]"));
    Modality m;
    if (!mr.has("name")) fail(where, ".modalities[", i, "]: missing 'name'");
    m.name = mr.string("name", "");
    std::string kind = mr.string("kind", "discrete");
    if (kind == "continuous") {
      m.continuous = true;
      for (const char* k : {"patch", "channels", "image_size"})
        if (!mr.has(k)) fail(where, ".modalities[", i, "]: a continuous modality needs '", k, "'");
      m.patch = mr.integer("patch", 0);
      m.channels = mr.integer("channels", 0);
      m.image_size = mr.integer("image_size", 0);
    } else if (kind == "discrete") {
      if (!mr.has("begin") || !mr.has("end")) fail(where, ".modalities[", i, "]: missing 'begin' or 'end'");
      m.begin = mr.integer("begin", 0);
      m.end = mr.integer("end", 0);
    } else {
      fail(where, ".modalities[", i, "]: kind '", kind, "' is not discrete or continuous");
    }
    mr.reject_unknown();
    c.modalities.push_back(m);
  }
  if (r.has("share")) {
    const json& s = r.raw("share");
    if (!s.is_object()) fail(where, ".share: expected a table {modality = \"owner\"}");
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!it.value().is_string()) fail(where, ".share.", it.key(), ": expected a modality name");
      c.share[it.key()] = it.value().get<std::string>();
    }
  }
  r.reject_unknown();
  c.validate(where);
  return c;
}

void ModelConfig::validate(const std::string& where) const {
  if (arch != "dense" && arch != "mot" && arch != "moe")
    fail(where, ".arch: '", arch, "' is not one of dense, mot, moe");
  if (dim <= 0) fail(where, ".dim: must be a positive integer (got ", dim, ")");
  if (n_layers <= 0) fail(where, ".n_layers: must be a positive integer (got ", n_layers, ")");
  if (n_heads <= 0) fail(where, ".n_heads: must be a positive integer (got ", n_heads, ")");
  if (dim % n_heads) fail(where, ": n_heads (", n_heads, ") does not divide dim (", dim, ")");
  if (head_dim() % 2) fail(where, ": head dimension dim/n_heads = ", head_dim(), " must be even for RoPE");
  if (ffn_hidden <= 0) fail(where, ".ffn_hidden: must be a positive integer (got ", ffn_hidden, ")");
  if (vocab_size <= 0 || vocab_size > (int64_t{1} << 31) - 1)
    fail(where, ".vocab_size: must be in [1, 2^31) (got ", vocab_size, ")");
  // Token positions are 32-bit indices, and a row holds max_seq_len + 1 tokens.
  if (max_seq_len <= 0 || max_seq_len >= INT32_MAX)
    fail(where, ".max_seq_len: must be in [1, 2^31 - 1) (got ", max_seq_len, ")");
  if (norm_position != "pre" && norm_position != "post")
    fail(where, ".norm_position: '", norm_position, "' is not pre or post");
  if (!(norm_eps > 0) || !std::isfinite(norm_eps))
    fail(where, ".norm_eps: must be a positive finite number (got ", norm_eps, ")");
  if (!(rope_theta > 0) || !std::isfinite(rope_theta))
    fail(where, ".rope_theta: must be a positive finite number (got ", rope_theta, ")");
  if (arch == "dense" && (untie[0] || untie[1] || untie[2]))
    fail(where, ".untie: a dense model unties nothing (use arch = \"mot\" for untied weights)");
  if (doc_mask && (bos_id < 0 || bos_id >= vocab_size))
    fail(where, ".bos_id: doc_mask needs bos_id in [0, vocab_size) (got ", bos_id, ")");
  if (bos_id >= vocab_size) fail(where, ".bos_id: ", bos_id, " is outside the vocabulary");
  std::set<std::string> names;
  int64_t expect = 0;
  int n_continuous = 0;
  for (const auto& m : modalities) {
    if (!valid_name(m.name)) fail(where, ".modalities: name '", m.name, "' must match [a-z][a-z0-9_]*");
    if (!names.insert(m.name).second) fail(where, ".modalities: duplicate name '", m.name, "'");
    if (m.continuous) {
      if (&m == &modalities.front())
        fail(where, ".modalities.", m.name, ": the first modality holds the special tokens, so it must be discrete");
      if (++n_continuous > 1) fail(where, ".modalities.", m.name, ": at most one continuous modality is supported");
      if (m.patch < 1 || m.patch > 64) fail(where, ".modalities.", m.name, ".patch: must be in [1, 64] (got ", m.patch, ")");
      if (m.channels < 1 || m.channels > 4)
        fail(where, ".modalities.", m.name, ".channels: must be in [1, 4] (got ", m.channels, ")");
      if (m.image_size < m.patch || m.image_size > 4096 || m.image_size % m.patch)
        fail(where, ".modalities.", m.name, ".image_size: must be a multiple of patch (", m.patch,
             ") in [patch, 4096] (got ", m.image_size, ")");
      continue;
    }
    if (m.begin != expect)
      fail(where, ".modalities.", m.name, ": range starts at ", m.begin, " but must start at ", expect,
           " (ranges are contiguous, ordered and begin at 0)");
    if (m.end <= m.begin) fail(where, ".modalities.", m.name, ": empty range [", m.begin, ", ", m.end, ")");
    expect = m.end;
  }
  if (expect != vocab_size)
    fail(where, ".modalities: ranges cover [0, ", expect, ") but vocab_size is ", vocab_size);
  if (n_continuous) {
    if (diffusion_steps < 2 || diffusion_steps > 100000)
      fail(where, ".diffusion_steps: must be in [2, 100000] (got ", diffusion_steps, ")");
    if (!std::isfinite(diffusion_weight) || diffusion_weight < 0)
      fail(where, ".diffusion_weight: must be a finite number >= 0 (got ", diffusion_weight, ")");
    if (dim % 2) fail(where, ".dim: the time embedding needs an even dim (got ", dim, ")");
    if (has_moe()) fail(where, ": the Transfusion setting (a continuous modality) does not support MoE yet");
  }
  for (const auto& [who, owner] : share) {
    for (const auto& m : modalities)
      if (m.continuous && (m.name == who || m.name == owner))
        fail(where, ".share: the continuous modality '", m.name, "' neither shares nor lends weights");
    if (arch != "mot") fail(where, ".share: only arch = \"mot\" can share weights between modalities");
    if (!names.count(who)) fail(where, ".share: unknown modality '", who, "'");
    if (!names.count(owner)) fail(where, ".share.", who, ": unknown modality '", owner, "'");
    if (share.count(owner) || owner == who) fail(where, ".share.", who, ": '", owner, "' must own its weights");
  }
  if (has_moe() && (n_experts < 1 || n_experts > 1024))
    fail(where, ".n_experts: must be in [1, 1024] (got ", n_experts, ")");
  if (arch == "moe" && untie[static_cast<int>(Component::Ffn)])
    fail(where, ".untie: with arch = \"moe\" the FFN is tied (its experts replace untying); remove 'ffn'");
  if (!moe_modalities.empty()) {
    if (arch != "mot")
      fail(where, ".moe_modalities: only the MoT+MoE hybrid (arch = \"mot\") has per-modality MoE FFNs");
    if (!untie[static_cast<int>(Component::Ffn)])
      fail(where, ".moe_modalities: the hybrid needs untied FFNs (untie must include 'ffn')");
    std::set<std::string> seen;
    for (const auto& m : moe_modalities) {
      if (!names.count(m)) fail(where, ".moe_modalities: unknown modality '", m, "'");
      if (!seen.insert(m).second) fail(where, ".moe_modalities: duplicate modality '", m, "'");
      // A pool is one modality's positions in a row; weights shared between modalities
      // would make that ambiguous, so MoE modalities neither share nor are shared.
      if (share.count(m)) fail(where, ".moe_modalities: '", m, "' uses another modality's weights (share)");
      for (const auto& [who, owner] : share)
        if (owner == m) fail(where, ".moe_modalities: '", m, "' lends its weights to '", who, "' (share)");
    }
  }
  // Sizes every consumer (parameter table, info, memory planning) multiplies together.
  if (!param_count(*this).ok() || !tensor_count(*this).ok())
    fail(where, ": a model of ", n_layers, " layers, dim ", dim, ", ffn_hidden ", ffn_hidden, ", vocab_size ",
         vocab_size, " has more parameters than a 64-bit integer counts; check n_layers, dim, ffn_hidden, "
         "vocab_size", has_moe() ? " and n_experts" : "");
}

Checked param_count(const ModelConfig& c) {
  const Checked d = c.dim, F = c.ffn_hidden, V = c.vocab_size, E = c.n_experts, hd = c.head_dim();
  const Checked A = c.n_copies(Component::Attention), N = c.n_copies(Component::Norm);
  Checked ffn = 0;
  for (int k = 0; k < c.n_copies(Component::Ffn); ++k)
    ffn += c.ffn_is_moe(k) ? E * d + E * Checked(3) * F * d : Checked(3) * F * d;
  const Checked attn = A * (Checked(4) * d * d + (c.qk_norm ? Checked(2) * hd : Checked(0)));
  const Checked layer = attn + Checked(2) * N * d + ffn;
  const Checked D = c.latent_dim();  // patch_in, patch_out, the time embedding's two layers
  const Checked continuous = c.has_continuous() ? Checked(2) * D * d + Checked(2) * d * d : Checked(0);
  return Checked(2) * V * d + Checked(c.n_layers) * layer + N * d + continuous;
}

Checked tensor_count(const ModelConfig& c) {
  const Checked A = c.n_copies(Component::Attention), N = c.n_copies(Component::Norm);
  Checked ffn = 0;
  for (int k = 0; k < c.n_copies(Component::Ffn); ++k)
    ffn += c.ffn_is_moe(k) ? Checked(1) + Checked(3) * Checked(c.n_experts) : Checked(3);
  const Checked layer = A * Checked(c.qk_norm ? 6 : 4) + Checked(2) * N + ffn;
  return Checked(2) + Checked(c.n_layers) * layer + N + Checked(c.has_continuous() ? 4 : 0);
}

json ModelConfig::to_json() const {
  json j;
  j["arch"] = arch;
  j["dim"] = dim;
  j["n_layers"] = n_layers;
  j["n_heads"] = n_heads;
  j["ffn_hidden"] = ffn_hidden;
  j["vocab_size"] = vocab_size;
  j["max_seq_len"] = max_seq_len;
  if (bos_id >= 0) j["bos_id"] = bos_id;
  j["norm_position"] = norm_position;
  j["qk_norm"] = qk_norm;
  j["norm_eps"] = norm_eps;
  j["rope_theta"] = rope_theta;
  json u = json::array();
  for (int i = 0; i < kComponents; ++i)
    if (untie[i]) u.push_back(kComponentNames[i]);
  j["untie"] = u;
  j["doc_mask"] = doc_mask;
  if (has_moe()) j["n_experts"] = n_experts;
  if (!moe_modalities.empty()) j["moe_modalities"] = moe_modalities;
  json mods = json::array();
  for (const auto& m : modalities) {
    if (m.continuous)
      mods.push_back({{"name", m.name}, {"kind", "continuous"}, {"patch", m.patch}, {"channels", m.channels},
                      {"image_size", m.image_size}});
    else
      mods.push_back({{"name", m.name}, {"begin", m.begin}, {"end", m.end}});
  }
  j["modalities"] = mods;
  if (has_continuous()) {
    j["diffusion_steps"] = diffusion_steps;
    j["diffusion_weight"] = diffusion_weight;
  }
  if (!share.empty()) j["share"] = share;
  return j;
}

TrainConfig TrainConfig::from_json(const json& j, const std::string& where) {
  Reader r(j, where);
  TrainConfig t;
  t.seq_len = r.integer("seq_len", t.seq_len);
  t.batch_size = r.integer("batch_size", t.batch_size);
  t.grad_accum = r.integer("grad_accum", t.grad_accum);
  t.steps = r.integer("steps", t.steps);
  t.lr = r.number("lr", t.lr);
  t.min_lr = r.number("min_lr", t.min_lr);
  t.warmup_steps = r.integer("warmup_steps", t.warmup_steps);
  t.weight_decay = r.number("weight_decay", t.weight_decay);
  t.beta1 = r.number("beta1", t.beta1);
  t.beta2 = r.number("beta2", t.beta2);
  t.eps = r.number("eps", t.eps);
  t.grad_clip = r.number("grad_clip", t.grad_clip);
  t.seed = r.integer("seed", t.seed);
  t.log_every = r.integer("log_every", t.log_every);
  t.eval_every = r.integer("eval_every", t.eval_every);
  t.eval_batches = r.integer("eval_batches", t.eval_batches);
  t.save_every = r.integer("save_every", t.save_every);
  t.threads = r.integer("threads", t.threads);
  t.dtype = r.string("dtype", t.dtype);
  t.caption_noise_max = r.integer("caption_noise_max", t.caption_noise_max);
  t.cfg_dropout = r.number("cfg_dropout", t.cfg_dropout);
  r.reject_unknown();
  if (t.caption_noise_max < 1) fail(where, ".caption_noise_max: must be positive (got ", t.caption_noise_max, ")");
  if (!(t.cfg_dropout >= 0 && t.cfg_dropout <= 1))
    fail(where, ".cfg_dropout: must be in [0, 1] (got ", t.cfg_dropout, ")");
  auto positive = [&](const char* k, int64_t v) {
    if (v <= 0) fail(where, ".", k, ": must be positive (got ", v, ")");
  };
  positive("seq_len", t.seq_len);
  positive("batch_size", t.batch_size);
  positive("grad_accum", t.grad_accum);
  positive("steps", t.steps);
  positive("log_every", t.log_every);
  positive("eval_batches", t.eval_batches);
  if (t.warmup_steps < 0) fail(where, ".warmup_steps: must be >= 0 (got ", t.warmup_steps, ")");
  if (t.eval_every < 0) fail(where, ".eval_every: must be >= 0 (0 = never; got ", t.eval_every, ")");
  if (t.save_every < 0) fail(where, ".save_every: must be >= 0 (0 = never; got ", t.save_every, ")");
  if (t.threads < 0 || t.threads > kMaxThreads)
    fail(where, ".threads: must be in [0, ", kMaxThreads, "] (0 = all cores; got ", t.threads, ")");
  if (t.dtype != "fp32" && t.dtype != "bf16") fail(where, ".dtype: must be fp32 or bf16 (got '", t.dtype, "')");
  // Real numbers: TOML also spells inf and nan, which no comparison below lets through.
  auto finite = [&](const char* k, double v, bool zero_ok, const char* note = "") {
    if (!std::isfinite(v) || v < 0 || (v == 0 && !zero_ok))
      fail(where, ".", k, ": must be a ", zero_ok ? "finite number >= 0" : "positive finite number", note, " (got ", v,
           ")");
  };
  finite("lr", t.lr, false);
  finite("min_lr", t.min_lr, true);
  if (t.min_lr > t.lr) fail(where, ".min_lr: must not exceed lr (got min_lr ", t.min_lr, ", lr ", t.lr, ")");
  for (auto [k, v] : {std::pair{"beta1", t.beta1}, {"beta2", t.beta2}})
    if (!(v >= 0 && v < 1)) fail(where, ".", k, ": must be in [0, 1) (got ", v, ")");
  finite("eps", t.eps, false);
  finite("weight_decay", t.weight_decay, true);
  finite("grad_clip", t.grad_clip, true, " (0 = no clipping)");
  // Products the trainer and evaluation form; memory itself is checked when the model
  // is built (model/memory.hpp).
  if (!(Checked(t.batch_size) * Checked(t.grad_accum) * (Checked(t.seq_len) + Checked(1))).ok())
    fail(where, ": batch_size x grad_accum x seq_len (", t.batch_size, " x ", t.grad_accum, " x ", t.seq_len,
         ") overflows 64-bit integers");
  if (!(Checked(t.eval_batches) * Checked(t.batch_size)).ok())
    fail(where, ": eval_batches x batch_size (", t.eval_batches, " x ", t.batch_size, ") overflows 64-bit integers");
  return t;
}

json TrainConfig::to_json() const {
  return {{"seq_len", seq_len},     {"batch_size", batch_size},     {"grad_accum", grad_accum},
          {"steps", steps},         {"lr", lr},                     {"min_lr", min_lr},
          {"warmup_steps", warmup_steps}, {"weight_decay", weight_decay}, {"beta1", beta1},
          {"beta2", beta2},         {"eps", eps},                   {"grad_clip", grad_clip},
          {"seed", seed},           {"log_every", log_every},       {"eval_every", eval_every},
          {"eval_batches", eval_batches}, {"save_every", save_every}, {"threads", threads},
          {"dtype", dtype}, {"caption_noise_max", caption_noise_max}, {"cfg_dropout", cfg_dropout}};
}

DataConfig DataConfig::from_json(const json& j, const std::string& where) {
  Reader r(j, where);
  DataConfig d;
  d.path = r.string("path", "");
  d.val_path = r.string("val_path", "");
  r.reject_unknown();
  return d;
}

json DataConfig::to_json() const {
  json j = json::object();
  if (!path.empty()) j["path"] = path;
  if (!val_path.empty()) j["val_path"] = val_path;
  return j;
}

json RunConfig::to_json() const {
  return {{"model", model.to_json()}, {"train", train.to_json()}, {"data", data.to_json()}};
}

namespace {
void json_to_toml(const json& j, toml::table& t) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const json& v = it.value();
    const std::string& k = it.key();
    if (v.is_object()) {
      toml::table sub;
      json_to_toml(v, sub);
      t.insert(k, std::move(sub));
    } else if (v.is_array()) {
      toml::array a;
      for (const json& e : v) {
        if (e.is_object()) {
          toml::table sub;
          json_to_toml(e, sub);
          sub.is_inline(true);
          a.push_back(std::move(sub));
        } else if (e.is_string()) a.push_back(e.get<std::string>());
        else if (e.is_number_integer()) a.push_back(e.get<int64_t>());
        else if (e.is_number()) a.push_back(e.get<double>());
        else if (e.is_boolean()) a.push_back(e.get<bool>());
      }
      t.insert(k, std::move(a));
    } else if (v.is_string()) t.insert(k, v.get<std::string>());
    else if (v.is_boolean()) t.insert(k, v.get<bool>());
    else if (v.is_number_integer()) t.insert(k, v.get<int64_t>());
    else if (v.is_number()) t.insert(k, v.get<double>());
  }
}
}  // namespace

std::string RunConfig::to_toml() const {
  toml::table root;
  json j = to_json();
  for (const char* k : {"model", "train", "data"}) {
    toml::table sub;
    json_to_toml(j[k], sub);
    root.insert(k, std::move(sub));
  }
  std::ostringstream os;
  os << "# resolved configuration written by mot\n" << root << "\n";
  return os.str();
}

namespace {
// Fills vocab_size / bos_id / modalities the model table leaves out from
// <data>/vocab.json, the vocabulary a data directory was tokenised with.
void fill_vocab_from_data(json& model, const json& data) {
  if (model.contains("vocab_size") && model.contains("modalities")) return;
  if (!data.is_object() || !data.contains("path") || !data["path"].is_string()) return;
  const std::string dir = data["path"].get<std::string>();
  if (!data::Vocab::exists(dir)) return;
  const json v = data::Vocab::read(dir, "a data directory").fields;
  if (!v.is_object()) fail(data::Vocab::path(dir), ": expected a JSON object");
  for (const char* k : {"vocab_size", "bos_id", "modalities"})
    if (!model.contains(k) && v.contains(k)) model[k] = v[k];
}
}  // namespace

RunConfig run_config_from_toml_text(const std::string& text, const std::string& origin,
                                    const std::vector<std::string>& overrides, const std::string& data_path) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    fail(origin, ":", b.line, ":", b.column, ": invalid TOML: ", e.description());
  }
  for (const auto& kv : overrides) apply_override(root, kv);
  json j = toml_to_json(root);
  if (!data_path.empty()) j["data"]["path"] = data_path;
  if (j.contains("model") && j["model"].is_object()) fill_vocab_from_data(j["model"], j.value("data", json::object()));
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "model" && it.key() != "train" && it.key() != "data")
      fail(origin, ": unknown table or key '", it.key(), "' (expected [model], [train], [data])");
  if (!j.contains("model")) {
    if (j.empty() || (j.size() == 1 && j.contains("data")))  // --data alone adds [data]
      fail(origin, ": holds no configuration (expected a [model] table; see configs/ for examples)");
    fail(origin, ": missing [model] table (a config needs [model] with arch, dim, n_layers, ...)");
  }
  RunConfig rc;
  rc.model = ModelConfig::from_json(j["model"], origin + ": model");
  rc.train = TrainConfig::from_json(j.value("train", json::object()), origin + ": train");
  rc.data = DataConfig::from_json(j.value("data", json::object()), origin + ": data");
  return rc;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides,
                          const std::string& data_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found)
    fail(path, ": no such config file (--config takes a TOML file, e.g. configs/tiny.toml)");
  if (st.type() == fs::file_type::directory) {
    const std::string inside = (fs::path(path) / "config.toml").string();
    fail(path, ": is a directory, not a TOML config file",
         fs::is_regular_file(inside, ec) ? cat(" (did you mean ", inside, "?)") : std::string(" (pass a .toml file)"));
  }
  errno = 0;
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open config file: ", errno ? std::strerror(errno) : "unreadable");
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail(path, ": cannot read config file: ", errno ? std::strerror(errno) : "read error");
  const std::string text = ss.str();
  // A model, shard or image passed by mistake: say so rather than quote TOML syntax.
  if (text.find('\0') != std::string::npos)
    fail(path, ": is a binary file, not a TOML config file (--config takes a TOML file with a [model] table)");
  return run_config_from_toml_text(text, path, overrides, data_path);
}

}  // namespace mot
