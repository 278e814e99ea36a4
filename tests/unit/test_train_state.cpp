// state.safetensors: the training RNG's state survives a save and a load word for word
// (every bit pattern, via the F32 limb encoding), a state file without it loads (the
// trainer then derives it from seed and step), and a corrupt one is refused.
#include <gtest/gtest.h>

#include <map>
#include <optional>

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
  // A state file at step 7 written by hand: adam_m, adam_v and metadata, with
  // `rng_state` when given (an older mot wrote none).
  std::string write_state(const std::string& name, const std::optional<std::string>& rng = std::nullopt) {
    const int64_t P = static_cast<int64_t>(model.table().total);
    std::vector<mot::io::TensorToWrite> ts = {{"adam_m", mot::io::DType::F32, {P}, model.adam_m()},
                                              {"adam_v", mot::io::DType::F32, {P}, model.adam_v()}};
    std::map<std::string, std::string> meta = {{"format", "mot-train-state"}, {"format_version", "1"},
                                               {"step", "7"}, {"data_cursor", "56"}, {"run_config", "{}"}};
    if (rng) meta["rng_state"] = *rng;
    mot::io::write_safetensors(path(name), ts, meta);
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
  const std::string good = "0123456789abcdef fedcba9876543210 0000000000000000 ffffffffffffffff";
  EXPECT_EQ(*mot::load_train_state(write_state("good.safetensors", good), model).rng_state,
            (std::array<uint64_t, 4>{0x0123456789abcdefull, 0xfedcba9876543210ull, 0, ~0ull}));
  for (const char* bad : {"", "0123456789abcdef fedcba9876543210 0000000000000000",  // three words
                          "0123456789abcdef fedcba9876543210 0000000000000000 fffffffffffffffff",  // 17 digits
                          "0123456789abcdef-fedcba9876543210 0000000000000000 ffffffffffffffff",  // separator
                          "0123456789ABCDEF fedcba9876543210 0000000000000000 ffffffffffffffff",  // upper case
                          "0123456789abcdeg fedcba9876543210 0000000000000000 ffffffffffffffff"})  // not hex
    EXPECT_THROW(mot::load_train_state(write_state("bad.safetensors", std::string(bad)), model), mot::Error) << bad;
}

}  // namespace
