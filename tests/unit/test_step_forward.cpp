// Step-at-a-time forward, the seam generation builds on: a row's positions run a few
// at a time against a KV cache (keys/values after each position's own modality's
// projections, QK-norm and RoPE) must give the losses of one full-row forward. The
// full-row forward is the reference (the PyTorch parity tests check it); checked here
// per step against the full forward on the same prefix, for dense and MoT, pre- and
// post-norm, with QK-norm and document masks. Only GEMM blocking differs between the
// two schedules, so the tolerance is fp32 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/data/format/token_batch.hpp"
#include "mot/model/model.hpp"

namespace {

using mot::ModelConfig;

// d 32, 2 layers, 4 heads; text [0, 40), image [40, 64); bos 1.
ModelConfig make(const std::string& arch, bool qk_norm, const std::string& norm_position) {
  ModelConfig c;
  c.arch = arch;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.ffn_hidden = 48;
  c.vocab_size = 64;
  c.max_seq_len = 64;
  c.bos_id = 1;
  c.qk_norm = qk_norm;
  c.norm_position = norm_position;
  c.doc_mask = true;
  c.modalities = {{"text", 0, 40}, {"image", 40, 64}};
  if (arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  c.validate("test");
  return c;
}

// Two rows of 24 tokens: text, an image span, a second document (bos) in row 0.
const std::vector<std::vector<int32_t>> kRows = {
    {1, 5, 9, 2, 41, 47, 50, 63, 44, 3, 7, 1, 8, 12, 45, 46, 52, 40, 6, 11, 13, 2, 4, 9},
    {1, 30, 41, 42, 43, 44, 45, 46, 20, 21, 22, 23, 50, 51, 52, 53, 10, 11, 12, 60, 61, 62, 3, 4}};

// The rows step_batch and check_bit_identical use (kRows unless a test swaps in others).
const std::vector<std::vector<int32_t>>* g_rows = &kRows;

mot::TokenBatch tokens_of(int64_t len) {  // each row's first len tokens
  mot::TokenBatch b;
  b.rows = static_cast<int64_t>(kRows.size());
  b.len = len;
  for (const auto& row : kRows) b.tokens.insert(b.tokens.end(), row.begin(), row.begin() + len);
  return b;
}

// Positions [p0, p1) of every row, after p0 cached keys.
void step_batch(const ModelConfig& c, int64_t p0, int64_t p1, mot::Batch& b) {
  b.resize(static_cast<int64_t>((*g_rows).size()), p1 - p0);
  b.past.assign((*g_rows).size(), static_cast<int32_t>(p0));
  for (size_t r = 0; r < (*g_rows).size(); ++r) {
    const auto& row = (*g_rows)[r];
    b.row_len[r] = static_cast<int32_t>(p1 - p0);
    int32_t doc = 0;
    for (int64_t t = 0; t < p1; ++t) {
      if (row[t] == c.bos_id) doc = static_cast<int32_t>(t);
      if (t < p0) continue;
      const int64_t i = b.at(static_cast<int64_t>(r), t - p0);
      b.modality[i] = c.modality_of_token(row[t]);
      b.token[i] = row[t];
      b.target[i] = row[t + 1];
      b.target_modality[i] = c.modality_of_token(row[t + 1]);
      b.pos[i] = static_cast<int32_t>(t);
      b.kv_lo[i] = doc;
      b.kv_hi[i] = static_cast<int32_t>(t + 1);
    }
  }
}

// Host storage for a KV cache of `rows` x `capacity` keys per layer.
struct KvStorage {
  std::vector<std::vector<float>> data;
  mot::KvCache cache;
  KvStorage(const ModelConfig& c, int64_t rows, int64_t capacity)
      : data(2 * c.n_layers, std::vector<float>(rows * c.n_heads * capacity * c.head_dim(), 0.0f)) {
    cache.rows = rows;
    cache.capacity = capacity;
    for (int l = 0; l < c.n_layers; ++l) {
      cache.k.push_back(data[2 * l].data());
      cache.v.push_back(data[2 * l + 1].data());
    }
  }
};

void check_steps(const ModelConfig& c) {
  const int64_t rows = static_cast<int64_t>(kRows.size()), len = static_cast<int64_t>(kRows[0].size());
  mot::Model full(c, rows, len, false);
  mot::init_params(c, full.table(), full.params(), 11);
  mot::Model step(c, rows, len, false);
  std::copy(full.params(), full.params() + full.table().total, step.params());

  const int64_t capacity = len - 1;
  KvStorage kv(c, rows, capacity);
  step.attach_kv_cache(&kv.cache);

  // A prompt of 7 positions in one pass, then 1, 2 or 3 new positions at a time.
  const int M = c.n_modalities();
  mot::LossSums cumulative;
  cumulative.reset(M);
  mot::Batch b;
  int64_t p0 = 0;
  for (int64_t k = 0; p0 < capacity; ++k) {
    const int64_t p1 = std::min(capacity, k == 0 ? 7 : p0 + 1 + (k % 3));
    step_batch(c, p0, p1, b);
    step.run(b, false, 1.0f, cumulative);
    mot::LossSums want;
    want.reset(M);
    full.run(tokens_of(p1 + 1), false, 1.0f, want);  // the same prefix in one pass
    SCOPED_TRACE(testing::Message() << "positions up to " << p1);
    ASSERT_EQ(cumulative.targets, want.targets);
    EXPECT_NEAR(cumulative.loss, want.loss, 2e-5 * std::abs(want.loss));
    for (int m = 0; m < M; ++m) {
      EXPECT_EQ(cumulative.targets_by_mod[m], want.targets_by_mod[m]);
      EXPECT_NEAR(cumulative.by_mod[m], want.by_mod[m], 2e-5 * std::abs(want.loss));
    }
    p0 = p1;
  }
}

TEST(StepForward, DenseMatchesFullRow) { check_steps(make("dense", false, "pre")); }
TEST(StepForward, MotMatchesFullRow) { check_steps(make("mot", true, "pre")); }
TEST(StepForward, MotPostNormMatchesFullRow) { check_steps(make("mot", true, "post")); }

// Generation's exactness: batch-invariant models (Model::set_batch_invariant) give the
// same logits, bit for bit, whether a row's last position runs alone against the KV
// cache or inside its whole prefix, and whatever the other rows are.
void check_bit_identical(const ModelConfig& c, mot::Precision prec) {
  const int64_t rows = static_cast<int64_t>((*g_rows).size()), len = static_cast<int64_t>((*g_rows)[0].size());
  mot::Model full(c, rows, len, false, prec);
  mot::init_params(c, full.table(), full.params(), 11);
  mot::Model step(c, rows, len, false, prec);
  std::copy(full.params(), full.params() + full.table().total, step.params());
  if (c.has_moe()) {
    std::vector<float> thr(static_cast<size_t>(full.moe_threshold_count()), 0.26f);
    full.set_moe_thresholds(thr);
    step.set_moe_thresholds(thr);
    full.use_threshold_routing(true);
    step.use_threshold_routing(true);
  }
  full.set_batch_invariant(true);
  step.set_batch_invariant(true);
  const int64_t capacity = len - 1, V = c.vocab_size;
  KvStorage kv(c, rows, capacity);
  step.attach_kv_cache(&kv.cache);
  std::vector<float> a(rows * V), b(rows * V), one(V);
  mot::Batch bs, bf;
  int64_t p0 = 0;
  for (int64_t k = 0; p0 < capacity; ++k) {
    const int64_t p1 = std::min(capacity, k == 0 ? 5 : p0 + 1);
    step_batch(c, p0, p1, bs);
    step.last_logits(bs, a.data());
    step_batch(c, 0, p1, bf);  // the whole prefix, no cache
    full.last_logits(bf, b.data());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * a.size())) << "positions up to " << p1;
    p0 = p1;
  }
  // A row alone gives the logits it gets in the batch.
  mot::Model alone(c, 1, len, false, prec);
  std::copy(full.params(), full.params() + full.table().total, alone.params());
  if (c.has_moe()) {
    alone.set_moe_thresholds(full.moe_thresholds());
    alone.use_threshold_routing(true);
  }
  alone.set_batch_invariant(true);
  step_batch(c, 0, capacity, bf);
  full.last_logits(bf, b.data());
  mot::Batch b1 = bf;
  b1.rows = 1;
  b1.row_len.resize(1);
  b1.past.resize(1);
  for (auto* v : {&b1.modality, &b1.token, &b1.target, &b1.target_modality, &b1.pos, &b1.kv_lo, &b1.kv_hi})
    v->resize(static_cast<size_t>(b1.len));
  alone.last_logits(b1, one.data());
  EXPECT_EQ(0, std::memcmp(one.data(), b.data(), sizeof(float) * V));
}

TEST(StepForward, BatchInvariantDecodingIsBitIdentical) {
  check_bit_identical(make("dense", false, "pre"), mot::Precision::fp32);
  check_bit_identical(make("mot", true, "pre"), mot::Precision::fp32);
  check_bit_identical(make("mot", true, "post"), mot::Precision::bf16);
  ModelConfig moe = make("moe", false, "pre");
  moe.n_experts = 4;
  check_bit_identical(moe, mot::Precision::fp32);
  check_bit_identical(moe, mot::Precision::bf16);
}

// Rows long enough that a query sees several 16-key panels and more than one 16-lane
// vector of keys: the softmax sums of a query alone against the cache and of the same
// query in its prefix must still round alike (they once grouped terms by the tile's key
// extent, which differs between the two from 16 keys on AVX2 and 32 on AVX-512).
TEST(StepForward, BatchInvariantDecodingIsBitIdenticalOnLongRows) {
  std::vector<std::vector<int32_t>> rows(2);
  for (int t = 0; t < 80; ++t) {
    rows[0].push_back(t == 0 || t == 45 ? 1 : (t * 7 + 3) % 39 + 1 == 1 ? 2 : (t * 7 + 3) % 39 + 1);
    rows[1].push_back(t == 0 ? 1 : (t % 20 < 8 ? 40 + (t * 5) % 24 : 2 + (t * 11) % 37));
  }
  g_rows = &rows;
  for (auto [arch, prec] : {std::pair{"dense", mot::Precision::fp32}, std::pair{"mot", mot::Precision::bf16}}) {
    ModelConfig c = make(arch, true, "pre");
    c.max_seq_len = 128;
    check_bit_identical(c, prec);
  }
  g_rows = &kRows;
}

TEST(StepForward, RefusesBadCacheUse) {
  const ModelConfig c = make("mot", false, "pre");
  mot::Model m(c, 2, 24, false);
  mot::Batch b;
  step_batch(c, 3, 5, b);
  mot::LossSums out;
  out.reset(c.n_modalities());
  EXPECT_THROW(m.run(b, false, 1.0f, out), mot::Error);  // cached keys without a cache
  mot::KvCache too_big;
  too_big.rows = 2;
  too_big.capacity = 100;
  too_big.k.assign(c.n_layers, nullptr);
  too_big.v.assign(c.n_layers, nullptr);
  EXPECT_THROW(m.attach_kv_cache(&too_big), mot::Error);
}

}  // namespace
