// state.safetensors: the training RNG's state survives a save and a load word for word
// (every bit pattern, via the F32 limb encoding), a state file without it loads (the
// trainer then derives it from seed and step), and a corrupt one is refused.
#include <gtest/gtest.h>

#include "test_files.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/io/safetensors.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"
#include "mot/train/train_rng.hpp"

namespace {

mot::ModelConfig tiny() {
  return mot::ModelConfig::from_json(
      nlohmann::json::parse(R"({"arch": "dense", "dim": 8, "n_layers": 1, "n_heads": 2, "ffn_hidden": 16,
                               "vocab_size": 20, "max_seq_len": 16,
                               "modalities": [{"name": "text", "begin": 0, "end": 12},
                                              {"name": "image", "begin": 12, "end": 20}]})"),
      "tiny");
}

class TrainStateTest : public mot::test::TempDirTest {
 protected:
  // A state file at step 7 written by hand: adam_m, adam_v and `rng_state` when given
  // (an older mot wrote none).
  std::string write_state(const std::string& name, const std::vector<int64_t>& rng_shape = {},
                          const std::vector<float>& rng = {}) {
    const int64_t P = static_cast<int64_t>(model.table().total);
    std::vector<mot::io::TensorToWrite> ts = {{"adam_m", mot::io::DType::F32, {P}, model.adam_m()},
                                              {"adam_v", mot::io::DType::F32, {P}, model.adam_v()}};
    if (!rng_shape.empty()) ts.push_back({"rng_state", mot::io::DType::F32, rng_shape, rng.data()});
    mot::io::write_safetensors(path(name), ts,
                               {{"format", "mot-train-state"}, {"format_version", "1"}, {"step", "7"},
                                {"data_cursor", "56"}, {"run_config", "{}"}});
    return path(name);
  }
  mot::Model model{tiny(), 2, 16, true};
};

TEST_F(TrainStateTest, RngStateRoundTripsExactly) {
  mot::Rng rng = mot::train_rng(1234);
  for (int i = 0; i < 1000; ++i) rng.next();
  for (const std::array<uint64_t, 4>& words :
       {rng.state(), std::array<uint64_t, 4>{0, ~0ull, 0x8000000000000001ull, 0x7ff8000000000000ull}}) {
    mot::TrainState s{42, 4242, "{}", words};
    mot::save_train_state(path("state.safetensors"), model, s);
    const mot::TrainState back = mot::load_train_state(path("state.safetensors"), model);
    EXPECT_EQ(back.step, 42);
    EXPECT_EQ(back.data_cursor, 4242u);
    ASSERT_TRUE(back.rng_state.has_value());
    EXPECT_EQ(*back.rng_state, words);
  }
  // The restored generator continues the same stream.
  mot::TrainState s{1, 0, "{}", rng.state()};
  mot::save_train_state(path("state.safetensors"), model, s);
  mot::Rng restored;
  restored.set_state(*mot::load_train_state(path("state.safetensors"), model).rng_state);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(restored.next(), rng.next());
}

// A state file written before rng_state existed: only adam_m, adam_v and the metadata.
TEST_F(TrainStateTest, StateWithoutRngLoads) {
  const mot::TrainState s = mot::load_train_state(write_state("old.safetensors"), model);
  EXPECT_EQ(s.step, 7);
  EXPECT_EQ(s.data_cursor, 56u);
  EXPECT_FALSE(s.rng_state.has_value());
  // What the trainer uses then: a state derived from seed and step, not the fresh one.
  EXPECT_EQ(mot::train_rng(5, 0).state(), mot::train_rng(5).state());
  EXPECT_NE(mot::train_rng(5, 7).state(), mot::train_rng(5).state());
  EXPECT_EQ(mot::train_rng(5, 7).state(), mot::train_rng(5, 7).state());
}

TEST_F(TrainStateTest, CorruptRngStateIsRefused) {
  for (float bad : {65536.0f, 0.5f, -1.0f})
    EXPECT_THROW(mot::load_train_state(write_state("bad.safetensors", {4, 4}, std::vector<float>(16, bad)), model),
                 mot::Error);
  EXPECT_THROW(mot::load_train_state(write_state("shape.safetensors", {8}, std::vector<float>(8, 0.0f)), model),
               mot::Error);
}

}  // namespace
