// Memory planning (src/mot/model/memory.hpp): the closed-form counts agree with the
// parameter table, the planned arena agrees with what Model carves, and absurd sizes
// are refused from the config alone (fast, before allocating), overflow included.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "mot/core/error.hpp"
#include "mot/model/flops.hpp"
#include "mot/model/memory.hpp"
#include "mot/model/model.hpp"
#include "mot/model/params.hpp"

namespace {

using mot::ModelConfig;
using mot::Precision;

ModelConfig base(const char* arch) {
  ModelConfig c;
  c.arch = arch;
  c.dim = 16;
  c.n_layers = 3;
  c.n_heads = 2;
  c.ffn_hidden = 24;
  c.vocab_size = 40;
  c.max_seq_len = 64;
  c.modalities = {{"text", 0, 20}, {"image", 20, 32}, {"speech", 32, 40}};
  if (c.arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  return c;
}

// Every structural variant the parameter table and the arena know about.
std::vector<std::pair<std::string, ModelConfig>> variants() {
  std::vector<std::pair<std::string, ModelConfig>> v;
  v.emplace_back("dense", base("dense"));
  v.emplace_back("mot", base("mot"));
  ModelConfig q = base("mot");
  q.qk_norm = true;
  q.norm_position = "post";
  v.emplace_back("mot qk post", q);
  ModelConfig a = base("mot");
  a.untie[1] = false;  // attention and norm only
  v.emplace_back("mot untie attention+norm", a);
  ModelConfig s = base("mot");
  s.share = {{"speech", "image"}};
  v.emplace_back("mot share", s);
  ModelConfig e = base("moe");
  e.n_experts = 3;
  v.emplace_back("moe", e);
  ModelConfig h = base("mot");
  h.moe_modalities = {"text"};
  h.qk_norm = true;
  v.emplace_back("hybrid", h);
  for (auto& [name, c] : v) c.validate(name);
  return v;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mot::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Memory, ClosedFormCountsMatchTheParameterTable) {
  for (const auto& [name, c] : variants()) {
    const mot::ParamTable t = mot::build_param_table(c);
    ASSERT_TRUE(mot::param_count(c).ok()) << name;
    EXPECT_EQ(mot::param_count(c).value(), static_cast<int64_t>(t.total)) << name;
    EXPECT_EQ(mot::tensor_count(c).value(), static_cast<int64_t>(t.entries.size())) << name;
    EXPECT_EQ(mot::count_model(c, 16).params_total, static_cast<int64_t>(t.total)) << name;
  }
}

TEST(Memory, PlannedArenaIsWhatTheModelCarves) {
  constexpr int64_t kHuge = 2 << 20;
  for (const auto& [name, c] : variants())
    for (bool training : {false, true})
      for (Precision p : {Precision::fp32, Precision::bf16})
        for (auto [rows, len] : {std::pair<int64_t, int64_t>{1, 2}, {3, 17}, {2, 65}}) {
          const mot::MemoryNeed n = mot::model_memory(c, rows, len, training, p);
          mot::Model m(c, rows, len, training, p);
          const int64_t mapped = std::max<int64_t>(kHuge, (n.arena + kHuge - 1) / kHuge * kHuge);
          EXPECT_EQ(mapped, static_cast<int64_t>(m.arena_bytes()))
              << name << " training " << training << " bf16 " << (p == Precision::bf16) << " " << rows << "x" << len;
          EXPECT_EQ(n.params, static_cast<int64_t>(m.table().total)) << name;
          EXPECT_EQ(n.weights + n.optimizer + n.activations >= n.arena, true) << name;
          EXPECT_EQ(n.optimizer > 0, training) << name;
        }
}

TEST(Memory, ArenaPlanIsExactBeforeRounding) {
  // A model large enough that the 2 MiB rounding cannot hide a missing buffer.
  ModelConfig c = base("mot");
  c.qk_norm = true;
  c.dim = 64;
  c.n_heads = 4;
  c.ffn_hidden = 96;
  c.validate("test");
  for (int64_t rows : {61, 62, 63, 64}) {
    const mot::MemoryNeed n = mot::model_memory(c, rows, 65, true, Precision::fp32);
    mot::Model m(c, rows, 65, true, Precision::fp32);
    EXPECT_EQ((n.arena + (2 << 20) - 1) / (2 << 20) * (2 << 20), static_cast<int64_t>(m.arena_bytes())) << rows;
  }
}

TEST(Memory, AbsurdSizesAreRefusedFastWithTheNeed) {
  ModelConfig c = base("mot");
  c.n_layers = 1'000'000'000;
  c.validate("test");
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { mot::Model m(c, 4, 33, true); });
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  EXPECT_NE(msg.find("1000000000 layers"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("TiB to train"), std::string::npos) << msg;
  EXPECT_NE(msg.find("parameters, gradients and AdamW moments"), std::string::npos) << msg;
  EXPECT_NE(msg.find("of RAM"), std::string::npos) << msg;
  // Inference says "to run" and leaves the optimizer out.
  const std::string run = error_of([&] { mot::ensure_model_fits(c, 1, 2, false, Precision::fp32); });
  EXPECT_NE(run.find("to run: "), std::string::npos) << run;
  EXPECT_EQ(run.find("AdamW"), std::string::npos) << run;
}

TEST(Memory, BatchLimits) {
  const ModelConfig c = base("dense");
  EXPECT_NE(error_of([&] { mot::ensure_model_fits(c, 100'000'000, 33, true, Precision::fp32); }).find("2^31 - 1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { mot::ensure_model_fits(c, 1, 66, true, Precision::fp32); }).find("max_seq_len 64"),
            std::string::npos);
  EXPECT_NE(error_of([&] { mot::ensure_model_fits(c, 1, 1, true, Precision::fp32); }).find("at least 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { mot::ensure_model_fits(c, 0, 2, true, Precision::fp32); }).find("at least one row"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { mot::ensure_model_fits(c, 8, 65, true, Precision::fp32); }), "");
}

TEST(Memory, OverflowIsAnErrorNotAWrap) {
  ModelConfig c = base("dense");
  c.dim = 2'000'000'000;
  c.n_heads = 1'000'000'000;  // hd 2; 4 d^2 = 1.6e19 > 2^63
  EXPECT_FALSE(mot::param_count(c).ok());
  EXPECT_NE(error_of([&] { c.validate("cfg"); }).find("64-bit"), std::string::npos);
  EXPECT_NE(error_of([&] { mot::count_model(c, 16); }).find("64-bit"), std::string::npos);
  EXPECT_NE(error_of([&] { mot::model_memory(c, 1, 2, false, Precision::fp32); }).find("64-bit"), std::string::npos);
  // Fits int64 as a parameter count but not as bytes of training state.
  ModelConfig w = base("dense");
  w.n_layers = 10'000'000'000;  // 1.2e8 per layer: 1.2e18 parameters, 1.9e19 bytes to train
  w.dim = 4096;
  w.n_heads = 32;
  w.ffn_hidden = 4096;
  ASSERT_TRUE(mot::param_count(w).ok());
  EXPECT_NE(error_of([&] { mot::model_memory(w, 1, 2, true, Precision::fp32); }).find("64-bit"), std::string::npos);
}

TEST(Memory, TrainingAddsMicroBatches) {
  mot::RunConfig rc;
  rc.model = base("mot");
  rc.train.batch_size = 4;
  rc.train.grad_accum = 1'000'000'000;
  const mot::MemoryNeed n = mot::training_memory(rc, 33);
  EXPECT_GT(n.batches, int64_t{4} * 33 * 4 * 1'000'000'000);
  const std::string msg = error_of([&] { mot::ensure_training_fits(rc, 33); });
  EXPECT_NE(msg.find("1000000000 micro-batches (grad_accum)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("use a smaller grad_accum"), std::string::npos) << msg;
  rc.train.grad_accum = 2;
  EXPECT_EQ(error_of([&] { mot::ensure_training_fits(rc, 33); }), "");
}

TEST(Memory, CountModelRefusesNonPositiveSequence) {
  const ModelConfig c = base("dense");
  EXPECT_NE(error_of([&] { mot::count_model(c, 0); }).find("positive"), std::string::npos);
  EXPECT_NE(error_of([&] { mot::count_model(c, -5); }).find("positive"), std::string::npos);
}

TEST(Memory, FormatBytes) {
  EXPECT_EQ(mot::format_bytes(512), "512 bytes");
  EXPECT_EQ(mot::format_bytes(3 << 20), "3.0 MiB");
  EXPECT_EQ(mot::format_bytes(int64_t{24} << 30), "24.0 GiB");
  EXPECT_GT(mot::physical_memory_bytes(), int64_t{1} << 26);
}
