// The step-matching measure on hand-made curves.
#include <gtest/gtest.h>

#include "mot/compare/series.hpp"

using mot::compare::Series;

TEST(StepMatching, InterpolatesTheFirstCrossing) {
  Series dense{{100, 200, 300, 400}, {4.0, 3.0, 2.5, 2.0}};
  Series fast{{100, 200, 300, 400}, {3.5, 2.5, 1.5, 1.0}};
  // fast crosses 2.0 between 200 (2.5) and 300 (1.5): at 250.
  auto r = mot::compare::step_matching_ratio(dense, fast);
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(*r, 250.0 / 400.0);
  // Reaching it at an evaluation point exactly.
  Series exact{{100, 200, 300, 400}, {3.0, 2.0, 1.9, 1.8}};
  EXPECT_DOUBLE_EQ(*mot::compare::step_matching_ratio(dense, exact), 0.5);
  // A curve equal to dense reaches it at the very end: ratio 1.
  EXPECT_DOUBLE_EQ(*mot::compare::step_matching_ratio(dense, dense), 1.0);
  // Already below at the first evaluation.
  Series early{{100, 200}, {1.0, 0.9}};
  EXPECT_DOUBLE_EQ(*mot::compare::step_matching_ratio(dense, early), 100.0 / 400.0);
}

TEST(StepMatching, NotReached) {
  Series dense{{100, 200}, {3.0, 2.0}};
  Series slow{{100, 200}, {3.5, 2.1}};
  EXPECT_FALSE(mot::compare::step_matching_ratio(dense, slow).has_value());
  EXPECT_FALSE(mot::compare::step_matching_ratio(dense, Series{}).has_value());
}

TEST(StepMatching, MeanSeriesUsesCommonSteps) {
  Series a{{1, 2, 3}, {1.0, 2.0, 3.0}}, b{{1, 3}, {3.0, 5.0}};
  const Series m = mot::compare::mean_series({&a, &b});
  ASSERT_EQ(m.steps, (std::vector<double>{1, 3}));
  EXPECT_DOUBLE_EQ(m.values[0], 2.0);
  EXPECT_DOUBLE_EQ(m.values[1], 4.0);
}
