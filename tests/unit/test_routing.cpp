// build_routing (src/mot/model/routing.hpp) on a hand-made 3-modality config:
// stable sort by input modality (perm / inv inverse permutations, mod_begin offsets),
// row_len = valid tokens - 1, inputs / targets / target modalities / positions,
// targets_by_mod, row groups per component (tied -> one group, shared copies merged when
// adjacent), empty and one-token modality segments, doc_start from bos_id under
// doc_mask, degenerate batches, reuse of one Routing, and mot::Error on bad tokens.
// Every built routing is checked against a naive re-derivation from the tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "mot/data/format/token_batch.hpp"
#include "mot/core/error.hpp"
#include "mot/model/config.hpp"
#include "mot/model/routing.hpp"

using mot::Component;
using mot::ModelConfig;
using mot::Routing;
using mot::TokenBatch;

namespace {

// The model routes a Batch; these tests start from token rows, as the data does.
// (Routing::keys points into the batch, so it lives as long as the test thread.)
void route(const mot::ModelConfig& c, const mot::TokenBatch& tokens, mot::Routing& r) {
  static thread_local mot::Batch batch;
  mot::to_batch(c, tokens, batch);
  mot::build_routing(c, batch, r);
}

constexpr int kText = 0, kImage = 1, kAudio = 2;
constexpr int32_t kBos = 1;

// text [0, 10), image [10, 20), audio [20, 30); bos = 1 (text).
ModelConfig make_config(bool untie_attn = false, bool untie_ffn = false, bool untie_norm = false,
                        std::map<std::string, std::string> share = {}, bool doc_mask = false,
                        std::string arch = "mot") {
  ModelConfig c;
  c.arch = arch;
  c.dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.ffn_hidden = 32;
  c.vocab_size = 30;
  c.max_seq_len = 64;
  c.bos_id = kBos;
  c.doc_mask = doc_mask;
  c.untie[0] = untie_attn;
  c.untie[1] = untie_ffn;
  c.untie[2] = untie_norm;
  c.modalities = {{"text", 0, 10}, {"image", 10, 20}, {"audio", 20, 30}};
  c.share = std::move(share);
  c.validate("test");
  return c;
}

TokenBatch make_batch(const std::vector<std::vector<int32_t>>& rows) {
  TokenBatch b;
  b.rows = static_cast<int64_t>(rows.size());
  b.len = rows.empty() ? 0 : static_cast<int64_t>(rows[0].size());
  for (const auto& r : rows) {
    EXPECT_EQ(static_cast<int64_t>(r.size()), b.len) << "test batch rows must have equal length";
    b.tokens.insert(b.tokens.end(), r.begin(), r.end());
  }
  return b;
}

Routing build(const ModelConfig& c, const TokenBatch& b) {
  Routing r;
  route(c, b, r);
  return r;
}

// Re-derives everything from the tokens with plain loops and compares.
void check_routing(const ModelConfig& c, const TokenBatch& batch, const Routing& r) {
  const int M = c.n_modalities();
  const int64_t B = batch.rows, T = batch.len > 0 ? batch.len - 1 : 0;
  ASSERT_EQ(r.B, B);
  ASSERT_EQ(r.T, T);
  ASSERT_EQ(static_cast<int64_t>(r.row_len.size()), B);

  // Positions: (input modality, b, t) for every t < valid - 1, sorted stably = by (m, b, t).
  std::vector<std::tuple<int, int64_t, int64_t>> pos;
  for (int64_t b = 0; b < B; ++b) {
    int64_t valid = 0;
    while (valid < batch.len && batch.at(b, valid) >= 0) ++valid;
    const int64_t rl = std::max<int64_t>(valid - 1, 0);
    EXPECT_EQ(r.row_len[b], rl) << "row " << b;
    for (int64_t t = 0; t < rl; ++t) pos.emplace_back(c.modality_of_token(batch.at(b, t)), b, t);
  }
  std::stable_sort(pos.begin(), pos.end(),
                   [](const auto& x, const auto& y) { return std::get<0>(x) < std::get<0>(y); });
  const int64_t N = static_cast<int64_t>(pos.size());
  ASSERT_EQ(r.N, N);
  ASSERT_EQ(static_cast<int64_t>(r.perm.size()), N);
  ASSERT_EQ(static_cast<int64_t>(r.input.size()), N);
  ASSERT_EQ(static_cast<int64_t>(r.target.size()), N);
  ASSERT_EQ(static_cast<int64_t>(r.target_mod.size()), N);
  ASSERT_EQ(static_cast<int64_t>(r.pos.size()), N);
  ASSERT_EQ(static_cast<int64_t>(r.inv.size()), B * T);
  if (B * T > 0) {  // (an empty batch may have no storage at all)
    ASSERT_NE(r.keys.lo, nullptr);
    ASSERT_NE(r.keys.hi, nullptr);
  }
  ASSERT_EQ(static_cast<int>(r.mod_begin.size()), M + 1);
  ASSERT_EQ(static_cast<int>(r.targets_by_mod.size()), M);

  std::vector<int64_t> mod_begin(M + 1, 0), tbm(M, 0);
  std::vector<int32_t> inv(B * T, -1);
  for (int64_t s = 0; s < N; ++s) {
    const auto [m, b, t] = pos[s];
    mod_begin[m + 1]++;
    const int32_t tok = batch.at(b, t), tgt = batch.at(b, t + 1);
    inv[b * T + t] = static_cast<int32_t>(s);
    EXPECT_EQ(r.perm[s], b * T + t) << "perm, s=" << s;
    EXPECT_EQ(r.input[s], tok) << "input, s=" << s;
    EXPECT_EQ(r.target[s], tgt) << "target, s=" << s;
    EXPECT_EQ(r.target_mod[s], c.modality_of_token(tgt)) << "target_mod, s=" << s;
    EXPECT_EQ(r.pos[s], t) << "pos, s=" << s;
    tbm[c.modality_of_token(tgt)]++;
  }
  for (int m = 0; m < M; ++m) mod_begin[m + 1] += mod_begin[m];
  EXPECT_EQ(r.mod_begin, mod_begin);
  EXPECT_EQ(r.inv, inv);
  EXPECT_EQ(r.targets_by_mod, tbm);
  EXPECT_EQ(r.n_targets, N);  // every position has a target (the next valid token)
  // perm and inv are inverse permutations between [0, N) and the valid slots.
  for (int64_t s = 0; s < N; ++s) EXPECT_EQ(r.inv[r.perm[s]], s);
  int64_t valid_slots = 0;
  for (int64_t i = 0; i < B * T; ++i)
    if (r.inv[i] >= 0) {
      ++valid_slots;
      EXPECT_EQ(r.perm[r.inv[i]], i);
    }
  EXPECT_EQ(valid_slots, N);

  // Key ranges [lo, hi): lo is the last bos at or before t (0 if none) under doc_mask,
  // else 0; hi = t + 1 (causal); both 0 on padding.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      int32_t want = 0;
      if (c.doc_mask && t < r.row_len[b])
        for (int64_t u = 0; u <= t; ++u)
          if (batch.at(b, u) == c.bos_id) want = static_cast<int32_t>(u);
      EXPECT_EQ(r.keys.lo[b * T + t], want) << "key range start b=" << b << " t=" << t;
      EXPECT_EQ(r.keys.hi[b * T + t], t < r.row_len[b] ? t + 1 : 0) << "key range end b=" << b << " t=" << t;
    }

  // Groups: cover [0, N) in order, non-empty, maximal (neighbours differ in copy), and each
  // sorted row's group copy is the copy of its input modality.
  for (int comp = 0; comp < mot::kComponents; ++comp) {
    SCOPED_TRACE(testing::Message() << "component " << comp);
    const auto& g = r.groups[comp];
    int64_t at = 0;
    for (size_t k = 0; k < g.size(); ++k) {
      EXPECT_EQ(g[k].begin, at);
      EXPECT_LT(g[k].begin, g[k].end);
      if (k > 0) {
        EXPECT_NE(g[k].copy, g[k - 1].copy) << "adjacent groups with one copy were not merged";
      }
      for (int64_t s = g[k].begin; s < g[k].end && s < N; ++s)
        EXPECT_EQ(g[k].copy, c.copy_of(static_cast<Component>(comp), c.modality_of_token(r.input[s])))
            << "row " << s;
      at = g[k].end;
    }
    EXPECT_EQ(at, N);
    if (N == 0) {
      EXPECT_TRUE(g.empty());
    }
  }
}

struct G {
  int64_t begin, end;
  int copy;
};
void expect_groups(const Routing& r, Component comp, const std::vector<G>& want) {
  const auto& g = r.groups[static_cast<int>(comp)];
  ASSERT_EQ(g.size(), want.size()) << "component " << static_cast<int>(comp);
  for (size_t k = 0; k < g.size(); ++k) {
    EXPECT_EQ(g[k].begin, want[k].begin) << "group " << k;
    EXPECT_EQ(g[k].end, want[k].end) << "group " << k;
    EXPECT_EQ(g[k].copy, want[k].copy) << "group " << k;
  }
}

// Row 0: t t i a i t a | (7 valid: 6 positions), row 1: i i t -1..., row 2: a t t t t t t i
const std::vector<std::vector<int32_t>> kRows = {
    {2, 3, 11, 21, 12, 4, 22, -1},
    {13, 14, 5, -1, -1, -1, -1, -1},
    {23, 6, 7, 8, 9, 0, 1, 15},
};

}  // namespace

TEST(Routing, SortsStablyByModality) {
  const ModelConfig c = make_config();
  const TokenBatch b = make_batch(kRows);
  const Routing r = build(c, b);
  check_routing(c, b, r);
  EXPECT_EQ(r.T, 7);
  EXPECT_EQ(r.row_len, (std::vector<int32_t>{6, 2, 7}));
  // text inputs: row0 t0 t1 t5, row2 t1..t6  -> 9; image: row0 t2 t4, row1 t0 t1 -> 4; audio: row0 t3, row2 t0 -> 2
  EXPECT_EQ(r.mod_begin, (std::vector<int64_t>{0, 9, 13, 15}));
  EXPECT_EQ(r.N, 15);
  // Sorted order spelled out: text of row 0 then row 2, image row 0 then row 1, audio.
  const std::vector<int32_t> perm = {0, 1, 5, 15, 16, 17, 18, 19, 20, 2, 4, 7, 8, 3, 14};
  EXPECT_EQ(r.perm, perm);
  EXPECT_EQ(r.input, (std::vector<int32_t>{2, 3, 4, 6, 7, 8, 9, 0, 1, 11, 12, 13, 14, 21, 23}));
  EXPECT_EQ(r.target, (std::vector<int32_t>{3, 11, 22, 7, 8, 9, 0, 1, 15, 21, 4, 14, 5, 12, 6}));
  EXPECT_EQ(r.target_mod, (std::vector<int32_t>{0, 1, 2, 0, 0, 0, 0, 0, 1, 2, 0, 1, 0, 1, 0}));
  EXPECT_EQ(r.pos, (std::vector<int32_t>{0, 1, 5, 1, 2, 3, 4, 5, 6, 2, 4, 0, 1, 3, 0}));
  EXPECT_EQ(r.targets_by_mod, (std::vector<int64_t>{9, 4, 2}));
  EXPECT_EQ(r.n_targets, 15);
  // Padding slots: row 0 t6; row 1 t2..t6.
  EXPECT_EQ(r.inv[0 * 7 + 6], -1);
  for (int t = 2; t < 7; ++t) EXPECT_EQ(r.inv[1 * 7 + t], -1);
  // doc_mask off: every key range starts at 0 even though row 2 holds a bos (token 1).
  for (int64_t i = 0; i < r.B * r.T; ++i) EXPECT_EQ(r.keys.lo[i], 0);
}

TEST(Routing, GroupsTiedUntiedAndShared) {
  const TokenBatch b = make_batch(kRows);
  {  // all tied (mot with nothing untied, and dense): one group per component
    for (const char* arch : {"mot", "dense"}) {
      const ModelConfig c = make_config(false, false, false, {}, false, arch);
      const Routing r = build(c, b);
      check_routing(c, b, r);
      for (auto comp : {Component::Attention, Component::Ffn, Component::Norm})
        expect_groups(r, comp, {{0, 15, 0}});
    }
  }
  {  // attention untied, ffn and norm tied
    const ModelConfig c = make_config(true, false, false);
    const Routing r = build(c, b);
    check_routing(c, b, r);
    expect_groups(r, Component::Attention, {{0, 9, 0}, {9, 13, 1}, {13, 15, 2}});
    expect_groups(r, Component::Ffn, {{0, 15, 0}});
    expect_groups(r, Component::Norm, {{0, 15, 0}});
  }
  {  // audio shares image's weights: image and audio are adjacent -> one group
    const ModelConfig c = make_config(true, true, false, {{"audio", "image"}});
    const Routing r = build(c, b);
    check_routing(c, b, r);
    expect_groups(r, Component::Attention, {{0, 9, 0}, {9, 15, 1}});
    expect_groups(r, Component::Ffn, {{0, 9, 0}, {9, 15, 1}});
    expect_groups(r, Component::Norm, {{0, 15, 0}});
  }
  {  // audio shares text's weights: not adjacent in sorted order -> separate groups, same copy
    const ModelConfig c = make_config(false, false, true, {{"audio", "text"}});
    const Routing r = build(c, b);
    check_routing(c, b, r);
    expect_groups(r, Component::Norm, {{0, 9, 0}, {9, 13, 1}, {13, 15, 0}});
    expect_groups(r, Component::Attention, {{0, 15, 0}});
  }
  {  // image shares text: text + image merge, audio is copy 1
    const ModelConfig c = make_config(true, true, true, {{"image", "text"}});
    const Routing r = build(c, b);
    check_routing(c, b, r);
    for (auto comp : {Component::Attention, Component::Ffn, Component::Norm})
      expect_groups(r, comp, {{0, 13, 0}, {13, 15, 1}});
  }
}

// No image inputs at all (an image token only appears as the last, target-only token).
TEST(Routing, EmptyModalitySegment) {
  const TokenBatch b = make_batch({
      {2, 21, 3, 22, 10},  // t a t a | i (target only)
      {4, 5, 23, -1, -1},
  });
  {
    const ModelConfig c = make_config(true, true, true);
    const Routing r = build(c, b);
    check_routing(c, b, r);
    EXPECT_EQ(r.mod_begin, (std::vector<int64_t>{0, 4, 4, 6}));
    EXPECT_EQ(r.targets_by_mod, (std::vector<int64_t>{2, 1, 3}));  // the image token is a target
    expect_groups(r, Component::Attention, {{0, 4, 0}, {4, 6, 2}});
  }
  {  // audio shares text: text and audio become adjacent across the empty image segment
    const ModelConfig c = make_config(true, false, false, {{"audio", "text"}});
    const Routing r = build(c, b);
    check_routing(c, b, r);
    expect_groups(r, Component::Attention, {{0, 6, 0}});
  }
  {  // only one modality present
    const TokenBatch b1 = make_batch({{11, 12, 13}, {14, 15, -1}});
    const ModelConfig c = make_config(true, true, true);
    const Routing r = build(c, b1);
    check_routing(c, b1, r);
    EXPECT_EQ(r.mod_begin, (std::vector<int64_t>{0, 0, 3, 3}));
    expect_groups(r, Component::Ffn, {{0, 3, 1}});
  }
}

TEST(Routing, OneTokenModalitySegment) {
  const TokenBatch b = make_batch({
      {2, 3, 4, 25, 5, 6},  // one audio position
      {7, 12, 8, -1, -1, -1},  // one image position
  });
  const ModelConfig c = make_config(true, true, true);
  const Routing r = build(c, b);
  check_routing(c, b, r);
  EXPECT_EQ(r.mod_begin, (std::vector<int64_t>{0, 5, 6, 7}));
  expect_groups(r, Component::Norm, {{0, 5, 0}, {5, 6, 1}, {6, 7, 2}});
  EXPECT_EQ(r.input[5], 12);
  EXPECT_EQ(r.perm[5], 1 * 5 + 1);
  EXPECT_EQ(r.input[6], 25);
  EXPECT_EQ(r.perm[6], 0 * 5 + 3);
}

TEST(Routing, DocStartFollowsBos) {
  const ModelConfig c = make_config(true, false, false, {}, /*doc_mask=*/true);
  const TokenBatch b = make_batch({
      {kBos, 2, 11, kBos, 3, kBos, kBos, 21, 4, -1},  // several documents, back-to-back bos
      {2, 3, kBos, 12, 13, 14, 15, 16, 17, 18},       // first document has no bos
      {5, 6, 7, 8, 9, 2, 3, 4, 5, kBos},               // bos only as the final (target-only) token
      {kBos, -1, -1, -1, -1, -1, -1, -1, -1, -1},      // one valid token: no positions
  });
  const Routing r = build(c, b);
  check_routing(c, b, r);
  const int64_t T = 9;
  EXPECT_EQ(r.row_len, (std::vector<int32_t>{8, 9, 9, 0}));
  const std::vector<int32_t> row0 = {0, 0, 0, 3, 3, 5, 6, 6, 0};
  const std::vector<int32_t> row1 = {0, 0, 2, 2, 2, 2, 2, 2, 2};
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_EQ(r.keys.lo[0 * T + t], row0[t]) << t;
    EXPECT_EQ(r.keys.lo[1 * T + t], row1[t]) << t;
    EXPECT_EQ(r.keys.lo[2 * T + t], 0) << t;
    EXPECT_EQ(r.keys.lo[3 * T + t], 0) << t;
  }
  // Invariant of a causal document mask: key range start <= t and non-decreasing in t.
  for (int64_t b2 = 0; b2 < r.B; ++b2)
    for (int64_t t = 0; t < r.row_len[b2]; ++t) {
      EXPECT_LE(r.keys.lo[b2 * T + t], t);
      if (t > 0) {
        EXPECT_GE(r.keys.lo[b2 * T + t], r.keys.lo[b2 * T + t - 1]);
      }
    }
}

TEST(Routing, DegenerateBatches) {
  const ModelConfig c = make_config(true, true, true, {}, true);
  for (const auto& rows : std::vector<std::vector<std::vector<int32_t>>>{
           {},                                 // no rows
           {{}, {}},                           // rows of length 0
           {{5}, {-1}},                        // len 1: T = 0
           {{-1, -1, -1}, {3, -1, -1}},        // all padding / one valid token: N = 0
           {{3, 4}, {-1, -1}},                 // N = 1
       }) {
    TokenBatch b;
    b.rows = static_cast<int64_t>(rows.size());
    b.len = rows.empty() ? 5 : static_cast<int64_t>(rows[0].size());
    for (const auto& row : rows) b.tokens.insert(b.tokens.end(), row.begin(), row.end());
    SCOPED_TRACE(testing::Message() << "rows=" << b.rows << " len=" << b.len);
    const Routing r = build(c, b);
    check_routing(c, b, r);
  }
}

// One Routing reused for a big batch, then a small one (and with reserve): same result as
// a fresh build, nothing stale left in groups / counters.
TEST(Routing, ReuseMatchesFreshBuild) {
  const ModelConfig c = make_config(true, false, true, {{"audio", "image"}}, true);
  const TokenBatch big = make_batch(kRows);
  const TokenBatch small = make_batch({{21, 22, 3, kBos, 4}, {12, 2, -1, -1, -1}});
  Routing r;
  r.reserve(c, 8, 16);
  route(c, big, r);
  check_routing(c, big, r);
  route(c, small, r);
  check_routing(c, small, r);
  const Routing f = build(c, small);
  EXPECT_EQ(r.perm, f.perm);
  EXPECT_EQ(r.inv, f.inv);
  EXPECT_EQ(r.row_len, f.row_len);
  EXPECT_EQ(r.mod_begin, f.mod_begin);
  EXPECT_EQ(r.targets_by_mod, f.targets_by_mod);
  EXPECT_EQ(r.n_targets, f.n_targets);
  for (int comp = 0; comp < mot::kComponents; ++comp) ASSERT_EQ(r.groups[comp].size(), f.groups[comp].size());
}

// Random batches with random padding against the naive derivation.
TEST(Routing, RandomBatchesMatchNaive) {
  std::mt19937 rng(1234);
  const ModelConfig configs[] = {make_config(), make_config(true, true, true, {}, true),
                                 make_config(true, false, true, {{"audio", "text"}}, true)};
  for (int it = 0; it < 60; ++it) {
    const ModelConfig& c = configs[it % 3];
    const int64_t rows = 1 + rng() % 5, len = 1 + rng() % 20;
    TokenBatch b;
    b.rows = rows;
    b.len = len;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t valid = rng() % (len + 1);
      for (int64_t t = 0; t < len; ++t) {
        int32_t tok = -1;
        if (t < valid) tok = (rng() % 4 == 0) ? kBos : static_cast<int32_t>(rng() % 30);
        b.tokens.push_back(tok);
      }
    }
    SCOPED_TRACE(testing::Message() << "iteration " << it);
    Routing r;
    route(c, b, r);
    check_routing(c, b, r);
  }
}

TEST(Routing, BadTokensThrow) {
  const ModelConfig c = make_config(true, true, true, {}, true);
  Routing r;
  auto throws = [&](const std::vector<std::vector<int32_t>>& rows) {
    const TokenBatch b = make_batch(rows);
    EXPECT_THROW(route(c, b, r), mot::Error);
  };
  throws({{1, 2, 30}});                  // id == vocab_size
  throws({{1, 2, 3}, {4, 1000000, -1}});  // far outside, second row
  throws({{1, -2, 3}});                  // negative id other than -1
  throws({{-7, 2, 3}});                  // negative id first
  throws({{1, 2, -1, 3}});               // padding followed by a token
  throws({{-1, 5, -1}});                 // padding at the start, then a token
  throws({{1, 2, 3, 4}, {5, -1, -1, 6}});  // second row, token at the very end after padding
  throws({{30}});                         // single bad token (len 1: T = 0, still validated)
  throws({{2, 3, std::numeric_limits<int32_t>::max()}});
  throws({{2, 3, std::numeric_limits<int32_t>::min()}});
  // Still usable after an error.
  const TokenBatch ok = make_batch({{1, 2, 3}});
  route(c, ok, r);
  check_routing(c, ok, r);
}
