// MoE-4x (expert choice) and the MoT+MoE hybrid in the engine: config validation and
// round trip, the parameter table (SPEC section 3 names, shapes, weight decay, w1|w3
// adjacency), the expert-choice pools of build_routing, and batching invariance of
// the loss and of every gradient (a row alone vs in a padded batch).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "mot/data/format/token_batch.hpp"
#include "mot/core/error.hpp"
#include "mot/model/config.hpp"
#include "mot/model/model.hpp"
#include "mot/model/params.hpp"
#include "mot/model/routing.hpp"

using mot::Component;
using mot::ModelConfig;

namespace {

// The model routes a Batch; these tests start from token rows, as the data does.
// (Routing::keys points into the batch, so it lives as long as the test thread.)
void route(const mot::ModelConfig& c, const mot::TokenBatch& tokens, mot::Routing& r) {
  static thread_local mot::Batch batch;
  mot::to_batch(c, tokens, batch);
  mot::build_routing(c, batch, r);
}

// d 16, 2 layers, F 24, text [0, 40), image [40, 64); bos 1.
ModelConfig make(const std::string& arch, std::vector<std::string> moe_modalities = {}) {
  ModelConfig c;
  c.arch = arch;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.ffn_hidden = 24;
  c.vocab_size = 64;
  c.max_seq_len = 64;
  c.bos_id = 1;
  c.qk_norm = true;
  c.modalities = {{"text", 0, 40}, {"image", 40, 64}};
  if (arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  c.moe_modalities = std::move(moe_modalities);
  return c;
}

void expect_invalid(ModelConfig c, const std::string& needle) {
  try {
    c.validate("test");
    ADD_FAILURE() << "expected a config error mentioning '" << needle << "'";
  } catch (const mot::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

mot::TokenBatch batch_of(const std::vector<std::vector<int32_t>>& rows) {
  mot::TokenBatch b;
  b.rows = static_cast<int64_t>(rows.size());
  b.len = 0;
  for (const auto& r : rows) b.len = std::max<int64_t>(b.len, static_cast<int64_t>(r.size()));
  for (const auto& r : rows) {
    b.tokens.insert(b.tokens.end(), r.begin(), r.end());
    b.tokens.insert(b.tokens.end(), b.len - r.size(), -1);
  }
  return b;
}

// Interleaved text/image spans, deterministic.
std::vector<int32_t> row_of(int n, uint32_t seed) {
  std::vector<int32_t> r;
  uint32_t x = seed * 2654435761u + 1;
  bool image = seed % 2;
  while (static_cast<int>(r.size()) < n) {
    x = x * 1664525u + 1013904223u;
    const int span = 1 + (x >> 28) % 5;
    for (int i = 0; i < span && static_cast<int>(r.size()) < n; ++i) {
      x = x * 1664525u + 1013904223u;
      r.push_back(image ? 40 + static_cast<int32_t>((x >> 16) % 24) : 2 + static_cast<int32_t>((x >> 16) % 38));
    }
    image = !image;
  }
  return r;
}

}  // namespace

TEST(MoeConfig, ValidatesArchAndHybrid) {
  make("moe").validate("test");
  make("mot", {"text"}).validate("test");
  make("mot", {"text", "image"}).validate("test");
  ModelConfig m = make("moe");
  m.untie[static_cast<int>(Component::Attention)] = m.untie[static_cast<int>(Component::Norm)] = true;
  m.validate("test");  // attention and norms may be untied in the MoE baseline

  ModelConfig bad = make("moe");
  bad.untie[static_cast<int>(Component::Ffn)] = true;
  expect_invalid(bad, "untie");
  bad = make("moe");
  bad.n_experts = 0;
  expect_invalid(bad, "n_experts");
  expect_invalid(make("dense", {"text"}), "moe_modalities");
  expect_invalid(make("moe", {"text"}), "moe_modalities");
  expect_invalid(make("mot", {"audio"}), "unknown modality 'audio'");
  expect_invalid(make("mot", {"text", "text"}), "duplicate");
  bad = make("mot", {"text"});
  bad.untie[static_cast<int>(Component::Ffn)] = false;
  expect_invalid(bad, "untied FFN");
  bad = make("mot", {"image"});
  bad.share = {{"image", "text"}};
  expect_invalid(bad, "share");
  bad = make("mot", {"text"});
  bad.share = {{"image", "text"}};
  expect_invalid(bad, "lends");
}

TEST(MoeConfig, JsonRoundTripKeepsExperts) {
  ModelConfig c = make("mot", {"image"});
  c.n_experts = 3;
  c.validate("test");
  const ModelConfig back = ModelConfig::from_json(c.to_json(), "roundtrip");
  EXPECT_EQ(back.n_experts, 3);
  EXPECT_EQ(back.moe_modalities, std::vector<std::string>{"image"});
  EXPECT_EQ(back.to_json(), c.to_json());
  // A dense or MoT config does not gain MoE keys.
  EXPECT_FALSE(make("mot").to_json().contains("n_experts"));
  EXPECT_FALSE(make("mot").to_json().contains("moe_modalities"));
  // untie defaults to [] for arch = "moe"
  nlohmann::json j = make("moe").to_json();
  j.erase("untie");
  const ModelConfig d = ModelConfig::from_json(j, "json");
  EXPECT_FALSE(d.untie[0] || d.untie[1] || d.untie[2]);
  EXPECT_EQ(d.n_experts, 4);
}

TEST(MoeParams, NamesShapesDecayAndAdjacency) {
  ModelConfig c = make("moe");
  c.validate("test");
  const mot::ParamTable t = mot::build_param_table(c);
  const int64_t d = 16, F = 24;
  EXPECT_EQ(t.find("layers.0.feed_forward.w1.weight"), nullptr);
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".feed_forward.";
    const mot::ParamEntry* r = t.find(p + "router.weight");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->shape, (std::vector<int64_t>{4, d}));
    EXPECT_TRUE(r->decay);
    ASSERT_EQ(t.layers[l].experts.size(), 1u);
    const mot::ExpertOffsets& x = t.layers[l].experts[0];
    EXPECT_EQ(x.router, r->offset);
    EXPECT_EQ(t.layers[l].w13[0], mot::kNoTensor);
    ASSERT_EQ(x.w13.size(), 4u);
    for (int e = 0; e < 4; ++e) {
      const std::string q = p + "experts." + std::to_string(e) + ".";
      const mot::ParamEntry* w1 = t.find(q + "w1.weight");
      const mot::ParamEntry* w3 = t.find(q + "w3.weight");
      const mot::ParamEntry* w2 = t.find(q + "w2.weight");
      ASSERT_TRUE(w1 && w2 && w3);
      EXPECT_EQ(w1->shape, (std::vector<int64_t>{F, d}));
      EXPECT_EQ(w3->shape, (std::vector<int64_t>{F, d}));
      EXPECT_EQ(w2->shape, (std::vector<int64_t>{d, F}));
      EXPECT_TRUE(w1->decay && w2->decay && w3->decay);
      EXPECT_EQ(x.w13[e], w1->offset);
      EXPECT_EQ(w3->offset, w1->offset + static_cast<size_t>(F * d));  // one [2F, d] GEMM
      EXPECT_EQ(x.w2[e], w2->offset);
    }
  }
}

TEST(MoeParams, HybridSuffixesOnlyMoeModalities) {
  ModelConfig c = make("mot", {"text"});
  c.validate("test");
  const mot::ParamTable t = mot::build_param_table(c);
  EXPECT_NE(t.find("layers.1.feed_forward.router.text.weight"), nullptr);
  EXPECT_NE(t.find("layers.1.feed_forward.experts.3.w2.text.weight"), nullptr);
  EXPECT_NE(t.find("layers.1.feed_forward.w1.image.weight"), nullptr);
  EXPECT_EQ(t.find("layers.1.feed_forward.w1.text.weight"), nullptr);
  EXPECT_EQ(t.find("layers.1.feed_forward.router.image.weight"), nullptr);
  EXPECT_EQ(t.find("layers.1.feed_forward.experts.0.w1.image.weight"), nullptr);
  EXPECT_TRUE(c.ffn_is_moe(c.copy_of(Component::Ffn, 0)));
  EXPECT_FALSE(c.ffn_is_moe(c.copy_of(Component::Ffn, 1)));
}

TEST(MoeRouting, PoolsAreRowsInPositionOrder) {
  ModelConfig c = make("moe");
  c.untie[static_cast<int>(Component::Attention)] = true;  // sorted order != sequence order
  c.validate("test");
  // Row 0: 10 tokens -> 9 positions (k 2); row 1: 4 tokens -> 3 positions (k 0);
  // row 2: 6 tokens -> 5 positions (k 1).
  const auto b = batch_of({{2, 41, 3, 42, 43, 4, 5, 44, 6, 7}, {45, 8, 46, 9}, {10, 11, 47, 48, 12, 13}});
  mot::Routing r;
  route(c, b, r);
  ASSERT_EQ(r.moe.size(), 1u);
  const mot::MoeGroup& g = r.moe[0];
  EXPECT_EQ(g.begin, 0);
  EXPECT_EQ(g.end, r.N);
  EXPECT_EQ(g.k, 2 + 0 + 1);
  ASSERT_EQ(g.pool1 - g.pool0, 3);
  int64_t pick0 = 0;
  for (int64_t b_ = 0; b_ < 3; ++b_) {
    const mot::MoePool& p = r.pools[g.pool0 + b_];
    ASSERT_EQ(p.size, r.row_len[b_]);
    EXPECT_EQ(p.pick0, pick0);
    pick0 += p.size / 4;
    for (int64_t t = 0; t < p.size; ++t) EXPECT_EQ(r.pool_rows[p.begin + t], r.inv[b_ * r.T + t]);
  }
}

TEST(MoeRouting, HybridPoolsAreTheRowsModalityPositions) {
  ModelConfig c = make("mot", {"image"});
  c.validate("test");
  const auto b = batch_of({{2, 41, 3, 42, 43, 4, 5, 44, 45, 7}, {8, 9, 10}, {46, 11, 47, 48, 12, 13}});
  mot::Routing r;
  route(c, b, r);
  ASSERT_EQ(r.moe.size(), 1u);
  const mot::MoeGroup& g = r.moe[0];
  EXPECT_EQ(g.begin, r.mod_begin[1]);
  EXPECT_EQ(g.end, r.mod_begin[2]);
  // image positions: row 0 t = 1, 3, 4, 7, 8 (5: k 1); row 1 none (no pool);
  // row 2 t = 0, 2, 3 (3: k 0)
  ASSERT_EQ(g.pool1 - g.pool0, 2);
  EXPECT_EQ(g.k, 1);
  const mot::MoePool& p0 = r.pools[g.pool0];
  const mot::MoePool& p1 = r.pools[g.pool0 + 1];
  ASSERT_EQ(p0.size, 5);
  ASSERT_EQ(p1.size, 3);
  const int ts0[] = {1, 3, 4, 7, 8}, ts2[] = {0, 2, 3};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r.pool_rows[p0.begin + i], r.inv[0 * r.T + ts0[i]]);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.pool_rows[p1.begin + i], r.inv[2 * r.T + ts2[i]]);
  EXPECT_EQ(p1.pick0, 1);
}

namespace {

struct Result {
  mot::LossSums loss;
  std::vector<float> grads;
};

Result run(const ModelConfig& c, const std::vector<std::vector<int32_t>>& rows) {
  const mot::TokenBatch b = batch_of(rows);
  mot::Model m(c, b.rows, b.len, true);
  mot::init_params(c, m.table(), m.params(), 7);
  // Larger routers than the default init, so that scores differ clearly and the
  // experts' picks are well separated from ties.
  for (const auto& e : m.table().entries)
    if (e.name.find(".router") != std::string::npos)
      for (size_t i = 0; i < e.numel; ++i) m.params()[e.offset + i] *= 50.0f;
  std::fill(m.grads(), m.grads() + m.table().total, 0.0f);
  Result r;
  r.loss.reset(c.n_modalities());
  m.run(b, true, 1.0f, r.loss);
  r.grads.assign(m.grads(), m.grads() + m.table().total);
  return r;
}

void batching_invariance(const ModelConfig& c) {
  const std::vector<std::vector<int32_t>> rows = {row_of(30, 1), row_of(7, 2), row_of(2, 3), row_of(19, 4),
                                                  row_of(12, 5)};
  const Result all = run(c, rows);
  double loss = 0.0;
  int64_t targets = 0;
  std::vector<double> grads(all.grads.size(), 0.0);
  for (const auto& row : rows) {
    const Result one = run(c, {row});
    loss += one.loss.loss;
    targets += one.loss.targets;
    for (size_t i = 0; i < grads.size(); ++i) grads[i] += one.grads[i];
  }
  EXPECT_EQ(targets, all.loss.targets);
  EXPECT_NEAR(all.loss.loss, loss, 1e-5 * std::abs(loss));
  double scale = 0.0, err = 0.0;
  for (size_t i = 0; i < grads.size(); ++i) {
    scale = std::max(scale, std::abs(grads[i]));
    err = std::max(err, std::abs(grads[i] - all.grads[i]));
  }
  EXPECT_GT(scale, 0.0);
  EXPECT_LE(err, 1e-4 * scale) << "max |grad(batch) - sum of grad(row alone)| " << err << " of " << scale;
  // every router gradient is non-zero: the router does get a gradient through the scores
  const mot::ParamTable t = mot::build_param_table(c);
  for (const auto& e : t.entries)
    if (e.name.find(".router") != std::string::npos) {
      double s = 0.0;
      for (size_t i = 0; i < e.numel; ++i) s += std::abs(all.grads[e.offset + i]);
      EXPECT_GT(s, 0.0) << e.name;
    }
}

}  // namespace

TEST(MoeModel, RowAloneEqualsRowInBatchPre) {
  ModelConfig c = make("moe");
  c.validate("test");
  batching_invariance(c);
}

TEST(MoeModel, RowAloneEqualsRowInBatchPostUntiedAttention) {
  ModelConfig c = make("moe");
  c.norm_position = "post";
  c.untie[static_cast<int>(Component::Attention)] = true;
  c.validate("test");
  batching_invariance(c);
}

TEST(MoeModel, RowAloneEqualsRowInBatchHybrid) {
  ModelConfig c = make("mot", {"text"});
  c.validate("test");
  batching_invariance(c);
}
