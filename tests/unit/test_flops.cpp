// count_model (src/mot/model/flops.hpp) against counts written out by hand for tiny
// dense, MoT, MoE and hybrid configs.
#include <gtest/gtest.h>

#include "mot/model/config.hpp"
#include "mot/model/flops.hpp"

namespace {

// d 8, 2 layers, 2 heads (hd 4), F 16, V 20; text [0, 12), image [12, 20).
mot::ModelConfig tiny(const char* arch) {
  mot::ModelConfig c;
  c.arch = arch;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.ffn_hidden = 16;
  c.vocab_size = 20;
  c.max_seq_len = 32;
  c.modalities = {{"text", 0, 12}, {"image", 12, 20}};
  if (c.arch == "mot") c.untie[0] = c.untie[1] = c.untie[2] = true;
  return c;
}

}  // namespace

TEST(Flops, Dense) {
  mot::ModelConfig c = tiny("dense");
  c.validate("test");
  const mot::ModelCounts k = mot::count_model(c, 15);
  // per layer: wq wk wv wo 4*64 = 256, w1 w3 w2 3*128 = 384, two norms 16 -> 656
  // total: embedding 160 + 2 * 656 + final norm 8 + output 160
  EXPECT_EQ(k.params_total, 160 + 2 * 656 + 8 + 160);
  EXPECT_EQ(k.params_embedding, 160);
  EXPECT_EQ(k.params_active, 2 * 656 + 8 + 160 + 8);
  EXPECT_EQ(k.matmul_active, 2 * (256 + 384) + 160);
  EXPECT_DOUBLE_EQ(k.flops_fwd_matmul, 2.0 * 1440);
  EXPECT_DOUBLE_EQ(k.flops_fwd_attention, 4.0 * 8 * 8.0 * 2);  // T_avg = (15 + 1) / 2
  EXPECT_DOUBLE_EQ(k.flops_fwd, 2880.0 + 512.0);
  EXPECT_DOUBLE_EQ(k.flops_train, 3.0 * (2880.0 + 512.0));
}

TEST(Flops, MotUntiesEverythingButActiveIsDense) {
  mot::ModelConfig c = tiny("mot");
  c.qk_norm = true;
  c.validate("test");
  const mot::ModelCounts k = mot::count_model(c, 15);
  // per layer and modality: 256 + 384 + 16 norms + q_norm, k_norm 2*4 = 664
  EXPECT_EQ(k.params_total, 160 + 2 * 2 * 664 + 2 * 8 + 160);
  EXPECT_EQ(k.params_active, 2 * 664 + 8 + 160 + 8);
  EXPECT_EQ(k.matmul_active, 2 * (256 + 384) + 160);
}

TEST(Flops, MoeAddsExpertsToTotalAndTheRouterToActive) {
  mot::ModelConfig c = tiny("moe");
  c.validate("test");
  const mot::ModelCounts k = mot::count_model(c, 15);
  // per layer: attention 256, router 4*8 = 32, 4 experts of 384, norms 16
  EXPECT_EQ(k.params_total, 160 + 2 * (256 + 32 + 4 * 384 + 16) + 8 + 160);
  // a token: one expert's FFN on average (capacity 1) plus the router
  EXPECT_EQ(k.params_active, 2 * (256 + 384 + 32 + 16) + 8 + 160 + 8);
  EXPECT_EQ(k.matmul_active, 2 * (256 + 384 + 32) + 160);
  EXPECT_DOUBLE_EQ(k.flops_fwd_matmul, 2.0 * (2 * 672 + 160));

  c.n_experts = 2;
  const mot::ModelCounts k2 = mot::count_model(c, 15);
  EXPECT_EQ(k2.params_total, 160 + 2 * (256 + 16 + 2 * 384 + 16) + 8 + 160);
  EXPECT_EQ(k2.matmul_active, 2 * (256 + 384 + 16) + 160);
}

TEST(Flops, HybridCountsTextExpertsAndImageSwiglu) {
  mot::ModelConfig c = tiny("mot");
  c.moe_modalities = {"text"};
  c.validate("test");
  const mot::ModelCounts k = mot::count_model(c, 15);
  // per layer: text: attention 256 + norms 16 + router 32 + 4 experts 1536;
  //            image: attention 256 + norms 16 + SwiGLU 384
  EXPECT_EQ(k.params_total, 160 + 2 * ((256 + 16 + 32 + 1536) + (256 + 16 + 384)) + 2 * 8 + 160);
  // a text token (the router is counted: the larger of the two)
  EXPECT_EQ(k.matmul_active, 2 * (256 + 384 + 32) + 160);
}
