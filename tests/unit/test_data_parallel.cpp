// The pieces of data-parallel training that must hold exactly for N ranks to give one
// process's bits: shards and buckets tile the flat buffer, AdamW on shards equals AdamW
// on the whole, the gradient norm's blocks do not depend on the split, and loss slots
// add up to the sequential sum.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "mot/dist/data_parallel.hpp"
#include "mot/dist/loss_sums.hpp"
#include "mot/model/model.hpp"
#include "mot/train/optimizer.hpp"

namespace {

mot::ModelConfig small(const char* arch) {
  return mot::ModelConfig::from_json(
      nlohmann::json::parse(std::string(R"({"arch": ")") + arch + R"(", "dim": 48, "n_layers": 3, "n_heads": 2,
                               "ffn_hidden": 96, "vocab_size": 200, "max_seq_len": 16,
                               "modalities": [{"name": "text", "begin": 0, "end": 120},
                                              {"name": "image", "begin": 120, "end": 200}]})"),
      "small");
}

TEST(DataParallel, ShardsTileTheBufferAtNormBlockEdges) {
  for (size_t total : {size_t{1}, size_t{4095}, size_t{4097}, size_t{100000}, size_t{1} << 22})
    for (int n : {1, 2, 3, 4, 7}) {
      size_t next = 0;
      for (int r = 0; r < n; ++r) {
        const mot::dist::ShardRange s = mot::dist::shard_of(total, r, n);
        EXPECT_EQ(s.lo, next) << total << " " << n << " " << r;
        EXPECT_LE(s.lo, s.hi);
        EXPECT_EQ(s.lo % mot::kNormBlock, 0u);
        next = s.hi;
      }
      EXPECT_EQ(next, total);
    }
}

TEST(DataParallel, BucketsCoverEveryParameterOnceInBackwardOrder) {
  for (const char* arch : {"dense", "mot"}) {
    const mot::ParamTable t = mot::build_param_table(small(arch));
    std::vector<int> seen(t.total, 0);
    int last_layer = static_cast<int>(t.layers.size());
    for (const auto& b : mot::dist::DataParallel::bucket_ranges(t)) {
      for (size_t i = b.lo; i < b.hi; ++i) ++seen[i];
      if (b.layer >= 0) {
        EXPECT_EQ(b.layer, last_layer - 1) << "layers complete top first";
        last_layer = b.layer;
      }
    }
    for (size_t i = 0; i < t.total; ++i) ASSERT_EQ(seen[i], 1) << arch << " parameter " << i;
  }
}

TEST(DataParallel, AdamwOnShardsIsAdamwOnTheWhole) {
  const mot::ModelConfig c = small("mot");
  mot::TrainConfig tc;
  mot::Model whole(c, 1, 8, true);
  const size_t P = whole.table().total;
  std::mt19937 gen(5);
  std::normal_distribution<float> nd;
  for (size_t i = 0; i < P; ++i) {
    whole.params()[i] = nd(gen);
    whole.grads()[i] = nd(gen) * 0.01f;
    whole.adam_m()[i] = nd(gen) * 0.001f;
    whole.adam_v()[i] = std::abs(nd(gen)) * 1e-5f;
  }
  for (int n : {2, 3}) {
    std::vector<float> params(whole.params(), whole.params() + P);
    for (int r = 0; r < n; ++r) {
      const mot::dist::ShardRange s = mot::dist::shard_of(P, r, n);
      mot::Model shard(c, 1, 8, true, mot::Precision::fp32, mot::Device::cpu, s.size());
      ASSERT_EQ(shard.moment_floats(), s.size() ? s.size() : P);
      std::memcpy(shard.params(), params.data(), sizeof(float) * P);
      std::memcpy(shard.grads(), whole.grads(), sizeof(float) * P);
      std::memcpy(shard.adam_m(), whole.adam_m() + s.lo, sizeof(float) * s.size());
      std::memcpy(shard.adam_v(), whole.adam_v() + s.lo, sizeof(float) * s.size());
      mot::adamw_range(shard, tc, 1e-3, 3, s.lo, s.hi);
      std::memcpy(params.data() + s.lo, shard.params() + s.lo, sizeof(float) * s.size());
    }
    mot::Model ref(c, 1, 8, true);
    std::memcpy(ref.params(), whole.params(), sizeof(float) * P);
    std::memcpy(ref.grads(), whole.grads(), sizeof(float) * P);
    std::memcpy(ref.adam_m(), whole.adam_m(), sizeof(float) * P);
    std::memcpy(ref.adam_v(), whole.adam_v(), sizeof(float) * P);
    mot::adamw_step(ref, tc, 1e-3, 3);
    EXPECT_EQ(0, std::memcmp(params.data(), ref.params(), sizeof(float) * P)) << n << " shards";
  }
}

TEST(DataParallel, NormBlocksDoNotDependOnTheSplit) {
  const size_t P = 3 * mot::kNormBlock + 123;
  std::vector<float> g(P);
  std::mt19937 gen(9);
  std::normal_distribution<float> nd;
  for (auto& v : g) v = nd(gen);
  std::vector<double> whole(mot::norm_blocks(P)), parts(mot::norm_blocks(P), 0.0);
  mot::block_sum_squares(g.data(), 0, P, whole.data());
  for (int r = 0; r < 3; ++r) {
    const mot::dist::ShardRange s = mot::dist::shard_of(P, r, 3);
    if (s.size()) mot::block_sum_squares(g.data(), s.lo, s.hi, parts.data());
  }
  EXPECT_EQ(whole, parts);
  double direct = 0;  // and it is the sum of squares
  for (float v : g) direct += static_cast<double>(v) * v;
  EXPECT_NEAR(mot::add_in_order(whole.data(), whole.size()), direct, 1e-9 * direct);
}

TEST(DataParallel, LossSlotsAddInSlotOrder) {
  mot::dist::World& one = mot::dist::World::join();  // a single process here
  mot::dist::LossSlots slots(2, 3);
  mot::LossSums seq;
  seq.reset(2);
  for (int k = 0; k < 3; ++k) {
    mot::LossSums s;
    s.reset(2);
    s.loss = 0.1 * (k + 1) + 1e-17 * k;
    s.targets = 10 + k;
    s.by_mod = {0.3 / (k + 1), 0.7};
    s.targets_by_mod = {k, 10};
    s.diffusion = 1.0 / 3.0;
    s.diffusion_values = 48;
    slots.set(static_cast<size_t>(k), s);
    seq.add(s);
  }
  slots.gather(one, "test");
  const mot::LossSums t = slots.total();
  EXPECT_EQ(t.loss, seq.loss);
  EXPECT_EQ(t.targets, seq.targets);
  EXPECT_EQ(t.by_mod, seq.by_mod);
  EXPECT_EQ(t.targets_by_mod, seq.targets_by_mod);
  EXPECT_EQ(t.diffusion, seq.diffusion);
  EXPECT_EQ(t.diffusion_values, seq.diffusion_values);
}

}  // namespace
