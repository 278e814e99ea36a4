// The config parser refuses what would break or mislead later: non-finite or
// out-of-range optimizer numbers, sizes whose products overflow, and --config paths
// that are not TOML files, each with the key or the path named.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/model/config.hpp"
#include "test_files.hpp"

namespace {

const char* kTiny = R"(
[model]
arch = "mot"
dim = 32
n_layers = 2
n_heads = 4
ffn_hidden = 64
vocab_size = 64
max_seq_len = 64
modalities = [ {name = "text", begin = 0, end = 32}, {name = "image", begin = 32, end = 64} ]
[train]
seq_len = 32
batch_size = 4
)";

std::string error_of(const std::vector<std::string>& overrides, const std::string& text = kTiny) {
  try {
    mot::run_config_from_toml_text(text, "c.toml", overrides);
  } catch (const mot::Error& e) {
    return e.what();
  }
  return "";
}

class ConfigFiles : public mot::test::TempDirTest {};

}  // namespace

TEST(Config, TinyParses) { EXPECT_EQ(error_of({}), ""); }

TEST(Config, TrainNumbersMustBeFiniteAndInRange) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> bad = {
      {"lr", {"inf", "-inf", "nan", "0.0", "-1e-3"}},
      {"min_lr", {"inf", "nan", "-1e-5", "1.0"}},
      {"eps", {"inf", "nan", "0.0", "-1e-8"}},
      {"beta1", {"1.0", "-0.1", "nan", "inf"}},
      {"beta2", {"1.5", "nan", "-inf"}},
      {"weight_decay", {"inf", "nan", "-0.1"}},
      {"grad_clip", {"inf", "nan", "-1.0"}},
      {"threads", {"-1", "100000"}},
      {"warmup_steps", {"-1"}},
      {"eval_every", {"-1"}},
      {"save_every", {"-1"}},
  };
  for (const auto& [key, values] : bad)
    for (const auto& v : values) {
      const std::string msg = error_of({"train." + key + "=" + v});
      EXPECT_NE(msg.find("train." + key + ":"), std::string::npos) << key << "=" << v << ": " << msg;
      EXPECT_NE(msg.find("got "), std::string::npos) << key << "=" << v << ": " << msg;
    }
  // The edges that are allowed.
  for (const std::string kv : {"train.grad_clip=0.0", "train.weight_decay=0.0", "train.min_lr=0.0", "train.beta1=0.0",
                               "train.min_lr=3e-4", "train.threads=4096"})
    EXPECT_EQ(error_of({kv}), "") << kv;
}

TEST(Config, ModelNumbersMustBeFinite) {
  for (const std::string key : {"norm_eps", "rope_theta"})
    for (const std::string v : {"inf", "nan", "0.0", "-1.0"}) {
      const std::string msg = error_of({"model." + key + "=" + v});
      EXPECT_NE(msg.find("model." + key + ":"), std::string::npos) << key << "=" << v << ": " << msg;
    }
}

TEST(Config, SizesThatOverflowAreRefused) {
  // 4 d^2 alone overflows int64.
  EXPECT_NE(error_of({"model.dim=4000000000", "model.n_heads=1000"}).find("64-bit"), std::string::npos);
  // The default ffn_hidden (8d/3) of an absurd dim.
  std::string text = kTiny;
  text.replace(text.find("ffn_hidden = 64\n"), 16, "");
  EXPECT_NE(error_of({"model.dim=4000000000000000000", "model.n_heads=1000"}, text).find("model.dim: "),
            std::string::npos);
  EXPECT_NE(error_of({"model.max_seq_len=2147483647"}).find("model.max_seq_len"), std::string::npos);
  EXPECT_NE(error_of({"train.batch_size=4000000000", "train.grad_accum=4000000000"}).find("overflows"),
            std::string::npos);
  EXPECT_NE(error_of({"train.eval_batches=4000000000000", "train.batch_size=4000000000"}).find("overflows"),
            std::string::npos);
  // Big but countable: the config is valid (memory is checked where a model is built).
  EXPECT_EQ(error_of({"model.n_layers=1000000000"}), "");
}

TEST_F(ConfigFiles, PathsThatAreNotTomlFiles) {
  auto error_at = [](const std::string& path) -> std::string {
    try {
      mot::load_run_config(path, {});
    } catch (const mot::Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_at(path("nope.toml")).find("no such config file"), std::string::npos);
  EXPECT_NE(error_at(dir_.string()).find("is a directory, not a TOML config file"), std::string::npos);
  std::ofstream(path("config.toml")) << kTiny;
  EXPECT_NE(error_at(dir_.string()).find("did you mean " + path("config.toml")), std::string::npos);
  mot::test::spit(path("bin.toml"), {'M', 'O', 'T', 0, 1, 2, '\n'});
  EXPECT_NE(error_at(path("bin.toml")).find("binary file"), std::string::npos);
  std::ofstream(path("empty.toml")) << "";
  EXPECT_NE(error_at(path("empty.toml")).find("holds no configuration"), std::string::npos);
  std::ofstream(path("train-only.toml")) << "[train]\nlr = 1e-3\n";
  EXPECT_NE(error_at(path("train-only.toml")).find("missing [model] table"), std::string::npos);
  EXPECT_EQ(error_at(path("config.toml")), "");
}
