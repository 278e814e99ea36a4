// The caption parser against the caption generator it inverts (data/synth/scene.cpp):
// every caption the generator writes parses and checks exact against its own scene (the
// metric's ceiling is 1.0); against another scene it rarely does; hand-written cases
// pin the relation subjects, "it", regions, counts and the failures.
#include <gtest/gtest.h>

#include "mot/core/rng.hpp"
#include "mot/evalgen/caption_parse.hpp"

namespace {

using mot::parse_caption;
using mot::StatedRelation;
using mot::data::Scene;
using mot::data::SceneObject;

SceneObject obj(const char* color, const char* shape, int size, float cx, float cy) {
  SceneObject o;
  o.color = mot::data::color_index(color);
  o.shape = mot::data::shape_index(shape);
  o.size = size;
  o.cx = cx;
  o.cy = cy;
  return o;
}

TEST(CaptionParse, EveryGeneratedCaptionIsExactForItsScene) {
  mot::Rng rng(5);
  int n = 0;
  for (int i = 0; i < 3000; ++i) {
    const Scene s = mot::data::random_scene(rng, 1 + i % 6);
    const std::string c = mot::data::caption(s, rng);
    const mot::ParsedCaption p = parse_caption(c);
    ASSERT_TRUE(p.ok) << c;
    const mot::CaptionCheck k = mot::check_caption(p, s);
    ASSERT_TRUE(k.exact) << c << " (" << k.correct << "/" << k.slots << ")";
    ASSERT_EQ(p.objects.size(), s.objects.size()) << c;
    n += static_cast<int>(p.relations.size());
  }
  EXPECT_GT(n, 300);  // relations are stated often enough to be tested here
}

TEST(CaptionParse, CaptionsOfOtherScenesAreRarelyExact) {
  mot::Rng rng(6);
  int exact = 0;
  double slot = 0;
  const int N = 2000;
  for (int i = 0; i < N; ++i) {
    const Scene a = mot::data::random_scene(rng, 3), b = mot::data::random_scene(rng, 3);
    const mot::CaptionCheck k = mot::check_caption(parse_caption(mot::data::caption(a, rng)), b);
    exact += k.exact;
    slot += static_cast<double>(k.correct) / k.slots;
  }
  EXPECT_LT(exact, N / 50);
  EXPECT_LT(slot / N, 0.2);
}

TEST(CaptionParse, HandWrittenCases) {
  auto p = parse_caption("a red circle to the left of a big blue square.");
  ASSERT_TRUE(p.ok);
  ASSERT_EQ(p.objects.size(), 2u);
  EXPECT_EQ(p.objects[1].size, 1);
  EXPECT_EQ(p.objects[0].size, -1);
  ASSERT_EQ(p.relations.size(), 1u);
  EXPECT_EQ(p.relations[0].a, 0);
  EXPECT_EQ(p.relations[0].b, 1);
  EXPECT_EQ(p.relations[0].rel, StatedRelation::left_of);

  p = parse_caption("a red circle. a blue square is below it.");
  ASSERT_TRUE(p.ok);
  ASSERT_EQ(p.relations.size(), 1u);
  EXPECT_EQ(p.relations[0].a, 1);
  EXPECT_EQ(p.relations[0].b, 0);
  EXPECT_EQ(p.relations[0].rel, StatedRelation::below);

  p = parse_caption("there are three objects: a cyan star, a white ring, and a little green heart.");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.count, 3);
  EXPECT_EQ(p.objects.size(), 3u);
  EXPECT_EQ(p.objects[2].size, 0);

  p = parse_caption("a single orange cross in the top left corner.");
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.count, 1);
  EXPECT_EQ(p.objects[0].region, (std::array<int, 2>{0, 0}));

  EXPECT_TRUE(parse_caption("an empty black image.").empty_scene);
  for (const char* bad : {"", "a red", "a red blob", "a purple circle beside", "to the left of a red circle",
                          "a red circle and a zebra", "it is a red circle", "large"})
    EXPECT_FALSE(parse_caption(bad).ok) << bad;
}

TEST(CaptionParse, CheckCountsEachSlot) {
  Scene s;
  s.objects = {obj("red", "circle", 0, 0.2f, 0.5f), obj("blue", "square", 1, 0.75f, 0.5f)};
  // Right objects, wrong size for the circle, true relation: 2 objects + 1 size + 1 relation.
  auto k = mot::check_caption(parse_caption("a large red circle left of a blue square."), s);
  EXPECT_TRUE(k.parsed);
  EXPECT_FALSE(k.exact);
  EXPECT_EQ(k.slots, 4);
  EXPECT_EQ(k.correct, 3);
  // A spurious object and a missing one: slots = 2 scene objects + 2 mentions' misses.
  k = mot::check_caption(parse_caption("a red circle and a green star."), s);
  EXPECT_EQ(k.slots, 3);
  EXPECT_EQ(k.correct, 1);
  // A false relation.
  k = mot::check_caption(parse_caption("a red circle to the right of a blue square."), s);
  EXPECT_EQ(k.slots, 3);
  EXPECT_EQ(k.correct, 2);
  EXPECT_TRUE(mot::check_caption(parse_caption("a red circle beside a blue square."), s).exact);
  // Unparsed: no slot correct.
  k = mot::check_caption(parse_caption("red red red"), s);
  EXPECT_FALSE(k.parsed);
  EXPECT_EQ(k.correct, 0);
  EXPECT_EQ(k.slots, 2);
}

}  // namespace
