#include "mot/compare/variants.hpp"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>

#include <toml++/toml.h>

#include "mot/core/error.hpp"

namespace mot::compare {

namespace fs = std::filesystem;

namespace {

const char* kAllUntied = "model.untie=[\"attention\", \"ffn\", \"norm\"]";

// Every built-in variant sets all four architecture keys, so whatever the base config
// says about them (a base of arch = "mot" with a share table, say) does not leak in.
std::vector<std::string> arch_keys(const std::string& arch, const std::string& untie, const std::string& moe,
                                   const std::string& share) {
  return {"model.arch=" + arch, untie, "model.moe_modalities=" + moe, "model.share=" + share};
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

bool is_component(const std::string& s) { return s == "attention" || s == "ffn" || s == "norm"; }

// The [model] overrides of a built-in variant name, or false if `name` is not one.
// `base` supplies the modality names (the hybrid's MoE modality defaults to text).
bool builtin(const std::string& name, const ModelConfig& base, std::vector<std::string>& keys,
             std::string& description) {
  const std::string experts = cat("MoE-", base.n_experts, "x");
  if (name == "dense") {
    keys = arch_keys("dense", "model.untie=[]", "[]", "{}");
    description = "dense transformer: one set of weights for every modality";
  } else if (name == "mot") {
    keys = arch_keys("mot", kAllUntied, "[]", "{}");
    description = "Mixture-of-Transformers: attention, FFN and norms untied by modality";
  } else if (name == "moe") {
    keys = arch_keys("moe", "model.untie=[]", "[]", "{}");
    description = experts + " expert-choice FFN (router + " + std::to_string(base.n_experts) +
                  " experts of the dense FFN's shape); attention and norms dense";
  } else if (name == "hybrid" || name.rfind("hybrid-", 0) == 0) {
    std::string mod = name == "hybrid" ? "" : name.substr(7);
    if (mod.empty()) mod = base.modality_index("text") >= 0 ? "text" : base.modalities.front().name;
    keys = arch_keys("mot", kAllUntied, "[\"" + mod + "\"]", "{}");
    description = "MoT + MoE hybrid: MoT whose " + mod + " FFN is " + experts + " (expert choice)";
  } else if (name.rfind("mot-untie-", 0) == 0) {
    std::vector<std::string> parts;
    std::string rest = name.substr(10);
    for (size_t at = 0; at <= rest.size();) {
      const size_t plus = std::min(rest.find('+', at), rest.size());
      parts.push_back(rest.substr(at, plus - at));
      at = plus + 1;
    }
    std::set<std::string> seen;
    for (const auto& p : parts)
      if (!is_component(p) || !seen.insert(p).second) return false;
    keys = arch_keys("mot", "model.untie=[\"" + join(parts, "\", \"") + "\"]", "[]", "{}");
    description = "MoT ablation: only " + join(parts, " and ") + " untied by modality, the rest shared";
  } else if (name.rfind("share-", 0) == 0 && name.find('=') != std::string::npos) {
    const std::string who = name.substr(6, name.find('=') - 6), owner = name.substr(name.find('=') + 1);
    if (who.empty() || owner.empty()) return false;
    keys = arch_keys("mot", kAllUntied, "[]", "{" + who + " = \"" + owner + "\"}");
    description = "MoT where " + who + " uses " + owner + "'s weights (leave-one-modality-out ablation)";
  } else {
    return false;
  }
  return true;
}

// Same tokens mean the same thing: vocabulary size, modality ranges, document start.
std::string vocabulary(const ModelConfig& m) {
  std::string s = cat("vocab_size ", m.vocab_size, ", bos_id ", m.bos_id, ", modalities");
  for (const auto& mod : m.modalities) s += cat(" ", mod.name, " [", mod.begin, ", ", mod.end, ")");
  return s;
}

std::string same_path(const std::string& p) { return fs::weakly_canonical(fs::absolute(p)).string(); }

// A variant given as a config file: its [model], the base's [train] and [data].
Variant from_file(const std::string& file, const RunConfig& base, const std::string& data) {
  Variant v;
  v.name = fs::path(file).stem().string();
  v.source = file;
  if (!fs::is_regular_file(file)) fail("variant ", file, ": config file not found");
  // A file naming other training data is a different experiment, not a variant.
  try {
    const toml::table t = toml::parse_file(file);
    if (const auto* p = t["data"]["path"].as_string(); p && same_path(p->get()) != same_path(data))
      fail("variant ", file, ": trains on different data (", p->get(), ") than the comparison (", data,
           "); every variant must use the same data");
  } catch (const toml::parse_error&) {
    // load_run_config below reports the syntax error with its position.
  }
  const RunConfig own = load_run_config(file, {}, data);
  v.config = base;
  v.config.model = own.model;
  if (vocabulary(own.model) != vocabulary(base.model))
    fail("variant ", file, ": its vocabulary (", vocabulary(own.model), ") differs from the base config's (",
         vocabulary(base.model), "); every variant must read the same tokens");
  v.description = "[model] of " + file + " (arch " + own.model.arch + "); [train] and [data] of the base config";
  return v;
}

}  // namespace

std::string variant_help() {
  return "Variants (--variants, comma-separated; dense is the baseline and must be one of them):\n"
         "  dense                 one set of weights for every modality\n"
         "  mot                   Mixture-of-Transformers: attention, FFN and norms untied by modality\n"
         "  moe                   MoE-4x: expert-choice FFN (n_experts experts + router), attention and norms dense\n"
         "  hybrid                MoT whose text FFN is MoE-4x (hybrid-<modality> for another modality)\n"
         "  mot-untie-<parts>     MoT untying only <parts> of attention, ffn, norm joined by '+'\n"
         "                        (mot-untie-ffn, mot-untie-attention, mot-untie-norm, mot-untie-ffn+norm, ...)\n"
         "  share-<mod>=<owner>   MoT where <mod> uses <owner>'s weights (leave-one-modality-out)\n"
         "  FILE.toml             the [model] table of another config (same vocabulary and data)\n";
}

std::vector<Variant> resolve_variants(const std::vector<std::string>& names, const std::string& base_config,
                                      const std::vector<std::string>& overrides, const std::string& data) {
  if (names.empty()) fail("--variants: give at least dense and one other variant");
  const RunConfig base = load_run_config(base_config, overrides, data);
  static const std::regex safe("[A-Za-z0-9_.+=-]+");
  std::vector<Variant> out;
  std::set<std::string> seen;
  for (const auto& name : names) {
    Variant v;
    std::vector<std::string> keys;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".toml") {
      v = from_file(name, base, data);
    } else if (builtin(name, base.model, keys, v.description)) {
      v.name = name;
      v.source = join(keys, " ");
      std::vector<std::string> all = overrides;
      all.insert(all.end(), keys.begin(), keys.end());
      try {
        v.config = load_run_config(base_config, all, data);
      } catch (const Error& e) {
        fail("variant '", name, "' does not fit ", base_config, ": ", e.what());
      }
    } else {
      fail("unknown variant '", name, "' (known: dense, mot, moe, hybrid[-<modality>], mot-untie-<parts>, "
           "share-<mod>=<owner>, or a FILE.toml; see mot compare --help)");
    }
    // The name becomes a directory and a gnuplot string; keep it plain.
    if (!std::regex_match(v.name, safe)) fail("variant '", v.name, "': names may use only letters, digits and _.+=-");
    if (!seen.insert(v.name).second) fail("variant '", v.name, "' is listed twice");
    out.push_back(std::move(v));
  }
  if (!seen.count("dense"))
    fail("--variants: the dense baseline is missing (ratios are measured against dense; add dense to the list)");
  if (out.size() < 2) fail("--variants: give at least one variant besides dense");
  std::stable_partition(out.begin(), out.end(), [](const Variant& v) { return v.name == "dense"; });
  return out;
}

}  // namespace mot::compare
