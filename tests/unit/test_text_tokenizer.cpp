// SentencePiece BPE wrapper: trains, round-trips text, keeps special ids fixed.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "mot/core/error.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"

using mot::data::TextTokenizer;

namespace {
std::vector<std::string> sentences() {
  const char* colors[] = {"red", "green", "blue", "yellow", "purple", "orange"};
  const char* shapes[] = {"circle", "square", "triangle", "diamond", "cross"};
  std::vector<std::string> out;
  for (int i = 0; i < 400; ++i)
    out.push_back(std::string("a ") + (i % 2 ? "small " : "large ") + colors[i % 6] + " " + shapes[i % 5] +
                  " left of a " + colors[(i / 6) % 6] + " " + shapes[(i / 5) % 5] + ".");
  return out;
}
}  // namespace

TEST(TextTokenizer, RoundTripsAndKeepsSpecialIds) {
  const auto s = sentences();
  TextTokenizer t = TextTokenizer::train(s, 160);
  EXPECT_EQ(t.piece(t.bos_id()), "<s>");
  EXPECT_EQ(t.piece(t.eos_id()), "</s>");
  EXPECT_EQ(t.piece(t.boi_id()), "<boi>");
  EXPECT_EQ(t.piece(t.eoi_id()), "<eoi>");
  EXPECT_LE(t.vocab_size(), 200);
  for (const auto& text : {s[0], s[17], std::string("a blue cross above a red circle. question: what colour? answer: red."),
                           std::string("Unseen: {x} & 42% ~ok!")}) {
    const auto ids = t.encode(text);
    ASSERT_FALSE(ids.empty());
    for (int id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, t.vocab_size());
    }
    EXPECT_EQ(t.decode(ids), text);
  }
  // Specials never leak into decoded text.
  auto ids = t.encode(s[3]);
  ids.insert(ids.begin(), t.bos_id());
  ids.push_back(t.eos_id());
  EXPECT_EQ(t.decode(ids), s[3]);
}

TEST(TextTokenizer, SaveLoadAndErrors) {
  const auto s = sentences();
  TextTokenizer t = TextTokenizer::train(s, 140);
  const std::string path = std::filesystem::temp_directory_path() / "mot-test-text.model";
  t.save(path);
  TextTokenizer u = TextTokenizer::load(path);
  EXPECT_EQ(u.encode(s[5]), t.encode(s[5]));
  std::FILE* f = std::fopen(path.c_str(), "wb");
  std::fputs("not a model", f);
  std::fclose(f);
  EXPECT_THROW(TextTokenizer::load(path), mot::Error);
  std::filesystem::remove(path);
  EXPECT_THROW(TextTokenizer::load("/nonexistent/x.model"), mot::Error);
  EXPECT_THROW(TextTokenizer::train({}, 100), mot::Error);
}
