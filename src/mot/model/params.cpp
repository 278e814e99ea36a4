#include "mot/model/params.hpp"

#include <cmath>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"

namespace mot {

namespace {

struct Builder {
  ParamTable& t;
  size_t add(std::string name, std::vector<int64_t> shape, bool decay) {
    ParamEntry e;
    e.name = std::move(name);
    e.numel = 1;
    for (int64_t s : shape) e.numel *= static_cast<size_t>(s);
    e.shape = std::move(shape);
    e.decay = decay;
    e.offset = t.total;
    t.total += e.numel;
    t.entries.push_back(std::move(e));
    return t.entries.back().offset;
  }
};

std::string suffix(const ModelConfig& c, Component comp, int copy) {
  std::string n = c.copy_name(comp, copy);
  return n.empty() ? "" : "." + n;
}

}  // namespace

const ParamEntry* ParamTable::find(const std::string& name) const {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

ParamTable build_param_table(const ModelConfig& c) {
  ParamTable t;
  Builder b{t};
  const int64_t d = c.dim, F = c.ffn_hidden, V = c.vocab_size, hd = c.head_dim();
  t.tok_embeddings = b.add("tok_embeddings.weight", {V, d}, false);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerOffsets L;
    const std::string p = cat("layers.", i, ".");
    for (int k = 0; k < c.n_copies(Component::Attention); ++k) {
      const std::string s = suffix(c, Component::Attention, k);
      L.wqkv.push_back(b.add(p + "attention.wq" + s + ".weight", {d, d}, true));
      b.add(p + "attention.wk" + s + ".weight", {d, d}, true);
      b.add(p + "attention.wv" + s + ".weight", {d, d}, true);
      L.wo.push_back(b.add(p + "attention.wo" + s + ".weight", {d, d}, true));
      if (c.qk_norm) {
        L.q_norm.push_back(b.add(p + "attention.q_norm" + s + ".weight", {hd}, false));
        L.k_norm.push_back(b.add(p + "attention.k_norm" + s + ".weight", {hd}, false));
      }
    }
    for (int k = 0; k < c.n_copies(Component::Norm); ++k)
      L.attn_norm.push_back(b.add(p + "attention_norm" + suffix(c, Component::Norm, k) + ".weight", {d}, false));
    for (int k = 0; k < c.n_copies(Component::Ffn); ++k) {
      const std::string s = suffix(c, Component::Ffn, k);
      ExpertOffsets X;
      if (!c.ffn_is_moe(k)) {
        L.w13.push_back(b.add(p + "feed_forward.w1" + s + ".weight", {F, d}, true));
        b.add(p + "feed_forward.w3" + s + ".weight", {F, d}, true);
        L.w2.push_back(b.add(p + "feed_forward.w2" + s + ".weight", {d, F}, true));
      } else {
        L.w13.push_back(kNoTensor);
        L.w2.push_back(kNoTensor);
        X.router = b.add(p + "feed_forward.router" + s + ".weight", {c.n_experts, d}, true);
        for (int64_t e = 0; e < c.n_experts; ++e) {
          const std::string x = cat(p, "feed_forward.experts.", e, ".");
          X.w13.push_back(b.add(x + "w1" + s + ".weight", {F, d}, true));
          b.add(x + "w3" + s + ".weight", {F, d}, true);
          X.w2.push_back(b.add(x + "w2" + s + ".weight", {d, F}, true));
        }
      }
      L.experts.push_back(std::move(X));
    }
    for (int k = 0; k < c.n_copies(Component::Norm); ++k)
      L.ffn_norm.push_back(b.add(p + "ffn_norm" + suffix(c, Component::Norm, k) + ".weight", {d}, false));
    t.layers.push_back(std::move(L));
  }
  for (int k = 0; k < c.n_copies(Component::Norm); ++k)
    t.final_norm.push_back(b.add("norm" + suffix(c, Component::Norm, k) + ".weight", {d}, false));
  t.output = b.add("output.weight", {V, d}, true);
  t.continuous.resize(c.modalities.size());
  for (size_t m = 0; m < c.modalities.size(); ++m) {
    const Modality& mod = c.modalities[m];
    if (!mod.continuous) continue;
    ContinuousOffsets& o = t.continuous[m];
    o.patch_in = b.add("patch_in." + mod.name + ".weight", {d, mod.latent_dim()}, true);
    o.patch_out = b.add("patch_out." + mod.name + ".weight", {mod.latent_dim(), d}, true);
    o.time_w1 = b.add("time_embed." + mod.name + ".w1.weight", {d, d}, true);
    o.time_w2 = b.add("time_embed." + mod.name + ".w2.weight", {d, d}, true);
  }
  return t;
}

void init_params(const ModelConfig& c, const ParamTable& t, float* params, uint64_t seed) {
  const double std_base = 0.02, std_out = 0.02 / std::sqrt(2.0 * c.n_layers);
  for (const auto& e : t.entries) {
    float* w = params + e.offset;
    if (e.shape.size() == 1) {
      for (size_t i = 0; i < e.numel; ++i) w[i] = 1.0f;
      continue;
    }
    const bool out_proj = e.name.find(".wo") != std::string::npos || e.name.find(".w2") != std::string::npos;
    const double s = out_proj ? std_out : std_base;
    Rng rng(seed * 0x9e3779b97f4a7c15ull ^ hash_string(e.name));
    for (size_t i = 0; i < e.numel; ++i) w[i] = static_cast<float>(s * rng.normal());
  }
}

}  // namespace mot
