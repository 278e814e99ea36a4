// CIDEr-D (src/mot/evalgen/cider.hpp) on cases computed by hand from Vedantam et al.'s
// definition as the coco-caption CiderD scorer implements it (derivations inline), plus
// its invariants.
#include <gtest/gtest.h>

#include <cmath>

#include "mot/core/error.hpp"
#include "mot/evalgen/cider.hpp"

namespace {

const double kPenalty1 = std::exp(-1.0 / 72.0);  // length (bigram count) differs by 1, sigma 6

TEST(Cider, Words) {
  EXPECT_EQ(mot::caption_words("A red  Circle, left of 2 squares."),
            (std::vector<std::string>{"a", "red", "circle", "left", "of", "2", "squares"}));
  EXPECT_TRUE(mot::caption_words(" ,. ").empty());
}

// Two images, each candidate equal to its one reference "a b" / "c d". Every n-gram is in
// one image's references: weight tf * (log 2 - log 1). Unigram and bigram cosines are 1,
// there are no 3- and 4-grams (their terms are 0): 10 * (1 + 1 + 0 + 0) / 4 = 5.
TEST(Cider, IdenticalTwoWordCaptionsScoreFive) {
  const mot::CiderScore s = mot::cider_d({"a b", "c d"}, {{"a b"}, {"c d"}});
  ASSERT_EQ(s.per_item.size(), 2u);
  EXPECT_NEAR(s.per_item[0], 5.0, 1e-12);
  EXPECT_NEAR(s.per_item[1], 5.0, 1e-12);
  EXPECT_NEAR(s.corpus, 5.0, 1e-12);
}

// Image 1: references "a b c", "a b d", candidate "a b". All n-grams have df 1, so each
// weight is L = log 2 and cancels in the cosines:
//   unigrams 2L² / (√2 L · √3 L) = 2/√6, bigrams L² / (L · √2 L) = 1/√2, trigrams 0;
//   lengths 1 vs 2 bigrams: factor e^(-1/72); the same against both references, so
//   item 1 = 10 e^(-1/72) (2/√6 + 1/√2) / 4.
// Image 2: reference "e f", candidate "e": unigram 1/√2, lengths 0 vs 1:
//   item 2 = 10 e^(-1/72) (1/√2) / 4.
TEST(Cider, ShorterCandidatesByHand) {
  const mot::CiderScore s = mot::cider_d({"a b", "e"}, {{"a b c", "a b d"}, {"e f"}});
  const double item1 = 10 * kPenalty1 * (2 / std::sqrt(6.0) + 1 / std::sqrt(2.0)) / 4;
  const double item2 = 10 * kPenalty1 * (1 / std::sqrt(2.0)) / 4;
  EXPECT_NEAR(s.per_item[0], item1, 1e-12);
  EXPECT_NEAR(s.per_item[1], item2, 1e-12);
  EXPECT_NEAR(s.corpus, (item1 + item2) / 2, 1e-12);
}

// Term frequency, document frequency and clipping. Three images (L3 = log 3):
//   1: reference "a a b", candidate "a b"; 2: reference "a c", candidate "x";
//   3: reference "d", candidate "d".
// df(a) = 2 (images 1 and 2), everything else 1; A = L3 - log 2.
//   Item 1 unigrams: candidate a: A, b: L3; reference a: 2A (tf 2), b: L3.
//     Clipped dot: min(A, 2A)·2A + L3·L3 = 2A² + L3²; norms √(A² + L3²), √(4A² + L3²).
//     Bigram "a b": 1/√2 (the reference also has "a a"); lengths 1 vs 2.
//   Item 2: no shared n-gram ("x" has df 0, weight L3): 0.
//   Item 3: unigram cosine 1, no bigrams, equal lengths: 10 / 4.
TEST(Cider, FrequenciesAndClippingByHand) {
  const mot::CiderScore s = mot::cider_d({"a b", "x", "d"}, {{"a a b"}, {"a c"}, {"d"}});
  const double L3 = std::log(3.0), A = L3 - std::log(2.0);
  const double uni = (2 * A * A + L3 * L3) / (std::sqrt(A * A + L3 * L3) * std::sqrt(4 * A * A + L3 * L3));
  const double item1 = 10 * kPenalty1 * (uni + 1 / std::sqrt(2.0)) / 4;
  EXPECT_NEAR(s.per_item[0], item1, 1e-12);
  EXPECT_EQ(s.per_item[1], 0.0);
  EXPECT_NEAR(s.per_item[2], 2.5, 1e-12);
  EXPECT_NEAR(s.corpus, (item1 + 2.5) / 3, 1e-12);
}

TEST(Cider, Invariants) {
  // Case and punctuation do not matter; a better match scores higher; more references of
  // the same caption do not change an item's score.
  const std::vector<std::vector<std::string>> refs = {{"a red circle left of a blue square"},
                                                      {"two green triangles"}, {"a small yellow square"}};
  const double exact = mot::cider_d({"A red circle, left of a blue square.", "two green triangles",
                                     "a small yellow square"}, refs).per_item[0];
  const double close = mot::cider_d({"a red circle left of a green square", "two green triangles",
                                     "a small yellow square"}, refs).per_item[0];
  const double far = mot::cider_d({"two blue triangles", "two green triangles", "a small yellow square"},
                                  refs).per_item[0];
  EXPECT_GT(exact, close);
  EXPECT_GT(close, far);
  const std::vector<std::string> cands = {"a red circle left of a blue square", "two green triangles",
                                          "a small yellow square"};
  std::vector<std::vector<std::string>> twice = refs;
  twice[0].push_back(twice[0][0]);
  const double doubled = mot::cider_d(cands, twice).per_item[0];
  const double single = mot::cider_d(cands, refs).per_item[0];
  EXPECT_GT(single, 0.0);
  EXPECT_DOUBLE_EQ(doubled, single);
  EXPECT_THROW(mot::cider_d({"a"}, {}), mot::Error);
  EXPECT_THROW(mot::cider_d({"a"}, {{}}), mot::Error);
}

}  // namespace
