// Procedural scenes: determinism, placement invariants, captions and QA documents that
// mention exactly the ground truth (with relations and answers that are geometrically
// right), anti-aliased rendering, render speed, and analyze_image recovering the objects.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/data/synth/scene.hpp"

using mot::Rng;
using mot::data::analyze_image;
using mot::data::caption;
using mot::data::color_names;
using mot::data::Detected;
using mot::data::Image;
using mot::data::qa_text;
using mot::data::random_scene;
using mot::data::render_scene;
using mot::data::Scene;
using mot::data::SceneObject;
using mot::data::shape_names;

namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (char c : text) {
    if (c >= 'a' && c <= 'z') {
      w += c;
    } else if (!w.empty()) {
      out.push_back(w);
      w.clear();
    }
  }
  if (!w.empty()) out.push_back(w);
  return out;
}

int shape_of_word(const std::string& w) {  // singular or plural
  for (size_t i = 0; i < shape_names().size(); ++i) {
    const std::string& s = shape_names()[i];
    if (w == s || w == s + "s" || w == s + "es") return static_cast<int>(i);
  }
  return -1;
}

// A mention of an object: "<colour> <shape>" at word position pos.
struct Mention {
  size_t pos;
  int color, shape;
};

std::vector<Mention> mentions(const std::vector<std::string>& w) {
  std::vector<Mention> out;
  for (size_t i = 0; i + 1 < w.size(); ++i) {
    const int c = mot::data::color_index(w[i]), s = shape_of_word(w[i + 1]);
    if (c >= 0 && s >= 0) out.push_back({i, c, s});
  }
  return out;
}

const SceneObject* find_obj(const Scene& s, int color, int shape) {
  for (const auto& o : s.objects)
    if (o.color == color && o.shape == shape) return &o;
  return nullptr;
}

// Every shape / colour word in the text belongs to the scene, and every object is mentioned.
void expect_mentions_exactly(const Scene& s, const std::string& text) {
  std::set<int> shapes, colors;
  for (const auto& o : s.objects) shapes.insert(o.shape), colors.insert(o.color);
  const auto w = words_of(text);
  for (const auto& word : w) {
    const int sh = shape_of_word(word), c = mot::data::color_index(word);
    if (sh >= 0) { EXPECT_TRUE(shapes.count(sh)) << "foreign shape '" << word << "' in: " << text; }
    if (c >= 0) { EXPECT_TRUE(colors.count(c)) << "foreign colour '" << word << "' in: " << text; }
  }
  const auto ms = mentions(w);
  for (const auto& o : s.objects) {
    bool found = false;
    for (const auto& m : ms) found |= m.color == o.color && m.shape == o.shape;
    EXPECT_TRUE(found) << "missing " << color_names()[o.color] << " " << shape_names()[o.shape] << " in: " << text;
  }
  for (const auto& m : ms) EXPECT_NE(find_obj(s, m.color, m.shape), nullptr) << text;
}

void expect_lower_ascii(const std::string& text) {
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || c == ' ' || c == '.' || c == ',' || c == ':' || c == '?' ||
                    c == ';' || c == '-';
    ASSERT_TRUE(ok) << "unexpected character " << int(static_cast<unsigned char>(c)) << " in: " << text;
  }
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.find("  "), std::string::npos) << text;
  EXPECT_NE(text[0], ' ') << text;
}

// Relations stated in a caption hold: "A <rel> B" with A the nearest mention before the
// relation words and B the next one after ("it" refers to the first mentioned object).
void expect_relations_hold(const Scene& s, const std::string& text) {
  const auto w = words_of(text);
  const auto ms = mentions(w);
  struct RelWord {
    std::vector<std::string> seq;
    int kind;  // 0 left, 1 right, 2 above, 3 below, 4 side by side
  };
  const std::vector<RelWord> rels = {{{"left", "of"}, 0},  {{"right", "of"}, 1}, {{"above"}, 2},
                                     {{"over"}, 2},        {{"below"}, 3},       {{"under"}, 3},
                                     {{"beneath"}, 3},     {{"next", "to"}, 4},  {{"beside"}, 4}};
  for (size_t i = 0; i < w.size(); ++i)
    for (const auto& r : rels) {
      bool match = i + r.seq.size() <= w.size();
      for (size_t k = 0; match && k < r.seq.size(); ++k) match = w[i + k] == r.seq[k];
      if (!match) continue;
      const Mention* before = nullptr;
      const Mention* after = nullptr;
      for (const auto& m : ms) {
        if (m.pos < i) before = &m;
        if (m.pos > i && !after) after = &m;
      }
      ASSERT_NE(before, nullptr) << text;
      const size_t next = i + r.seq.size();
      if (next < w.size() && w[next] == "it") after = &ms.front();
      ASSERT_NE(after, nullptr) << text;
      const SceneObject* a = find_obj(s, before->color, before->shape);
      const SceneObject* b = find_obj(s, after->color, after->shape);
      ASSERT_TRUE(a && b && a != b) << text;
      const float need = mot::data::object_radius(a->size) + mot::data::object_radius(b->size);
      const float dx = b->cx - a->cx, dy = b->cy - a->cy;
      switch (r.kind) {
        case 0: EXPECT_GT(dx, need) << text; break;
        case 1: EXPECT_LT(dx, -need) << text; break;
        case 2: EXPECT_GT(dy, need) << text; break;
        case 3: EXPECT_LT(dy, -need) << text; break;
        default:
          EXPECT_GT(std::fabs(dx), need) << text;
          EXPECT_LT(std::fabs(dy),
                    0.5f * std::min(mot::data::object_radius(a->size), mot::data::object_radius(b->size)) + 1e-6f)
              << text;
      }
    }
}

std::string number_word(size_t n) {
  static const char* const k[] = {"zero", "one", "two", "three", "four", "five", "six"};
  return k[n];
}

// Checks the answer of a qa_text document against the scene; returns the question kind.
std::string check_answer(const Scene& s, const std::string& doc) {
  const size_t qpos = doc.find(" question: "), apos = doc.find(" answer: ");
  EXPECT_NE(qpos, std::string::npos) << doc;
  EXPECT_NE(apos, std::string::npos) << doc;
  if (qpos == std::string::npos || apos == std::string::npos) return "?";
  EXPECT_LT(qpos, apos) << doc;
  EXPECT_EQ(doc.back(), '.') << doc;
  const std::string q = doc.substr(qpos + 11, apos - qpos - 11);
  const std::string ans = doc.substr(apos + 9, doc.size() - apos - 10);
  const auto qw = words_of(q);
  const auto qm = mentions(qw);
  auto obj = [&](size_t k) { return find_obj(s, qm.at(k).color, qm.at(k).shape); };
  auto name = [](const SceneObject* o) { return "the " + color_names()[o->color] + " " + shape_names()[o->shape]; };
  if (q.rfind("how many", 0) == 0) {
    size_t count = 0;
    int c = -1, sh = -1;
    for (const auto& w : qw) c = std::max(c, mot::data::color_index(w)), sh = std::max(sh, shape_of_word(w));
    for (const auto& o : s.objects) count += (c < 0 || o.color == c) && (sh < 0 || o.shape == sh);
    EXPECT_EQ(ans, number_word(count)) << doc;
    return "count";
  }
  if (q.find("colour") != std::string::npos || q.find("color") != std::string::npos) {
    int sh = -1;
    for (const auto& w : qw) sh = std::max(sh, shape_of_word(w));
    std::vector<int> cols;
    for (const auto& o : s.objects)
      if (o.shape == sh) cols.push_back(o.color);
    EXPECT_EQ(cols.size(), 1u) << "ambiguous question: " << doc;
    if (cols.size() == 1) { EXPECT_EQ(ans, color_names()[cols[0]]) << doc; }
    return "colour";
  }
  if (q.find("shape") != std::string::npos && qm.empty()) {
    int c = -1;
    for (const auto& w : qw) c = std::max(c, mot::data::color_index(w));
    std::vector<int> shapes;
    for (const auto& o : s.objects)
      if (o.color == c) shapes.push_back(o.shape);
    EXPECT_EQ(shapes.size(), 1u) << "ambiguous question: " << doc;
    if (shapes.size() == 1) { EXPECT_EQ(ans, shape_names()[shapes[0]]) << doc; }
    return "shape";
  }
  if (q.rfind("which", 0) == 0 && qm.size() == 2) {
    const SceneObject *a = obj(0), *b = obj(1);
    EXPECT_TRUE(a && b) << doc;
    if (!a || !b) return "?";
    const bool left = q.find("left") != std::string::npos, right = q.find("right") != std::string::npos;
    const bool up = q.find("higher") != std::string::npos || q.find("top") != std::string::npos;
    const float need = mot::data::object_radius(a->size) + mot::data::object_radius(b->size);
    const float av = (left || right) ? a->cx : a->cy, bv = (left || right) ? b->cx : b->cy;
    EXPECT_GT(std::fabs(av - bv), need) << "unclear comparison: " << doc;
    const bool low = left || up;
    EXPECT_EQ(ans, name((av < bv) == low ? a : b)) << doc;
    return (left || right) ? "left/right" : "above/below";
  }
  if (q.rfind("is there", 0) == 0) {
    EXPECT_EQ(ans, "yes") << doc;
    return "exists";
  }
  if (q.rfind("where", 0) == 0) {
    const SceneObject* o = obj(0);
    const bool l = ans.find("left") != std::string::npos, r = ans.find("right") != std::string::npos;
    const bool t = ans.find("top") != std::string::npos, b = ans.find("bottom") != std::string::npos;
    if (l) { EXPECT_LT(o->cx, 0.4f) << doc; }
    if (r) { EXPECT_GT(o->cx, 0.6f) << doc; }
    if (!l && !r) { EXPECT_NEAR(o->cx, 0.5f, 0.06f) << doc; }
    if (t) { EXPECT_LT(o->cy, 0.4f) << doc; }
    if (b) { EXPECT_GT(o->cy, 0.6f) << doc; }
    if (!t && !b) { EXPECT_NEAR(o->cy, 0.5f, 0.06f) << doc; }
    return "where";
  }
  if (q.find("size") != std::string::npos || q.find("small") != std::string::npos) {
    const SceneObject* o = obj(0);
    if (o->size) { EXPECT_TRUE(ans == "large" || ans == "big") << doc; }
    else EXPECT_EQ(ans, "small") << doc;
    return "size";
  }
  ADD_FAILURE() << "unrecognised question: " << doc;
  return "?";
}

// Does the detection list match the scene in count, and (shape, colour) of every object?
bool matches(const Scene& s, std::vector<Detected> d, int image_size, bool* size_ok = nullptr,
             float* max_pos_err = nullptr) {
  if (d.size() != s.objects.size()) return false;
  bool sizes = true;
  for (const auto& o : s.objects) {
    auto it = std::find_if(d.begin(), d.end(), [&](const Detected& x) { return x.shape == o.shape && x.color == o.color; });
    if (it == d.end()) return false;
    sizes &= it->size == o.size;
    if (max_pos_err)
      *max_pos_err = std::max({*max_pos_err, std::fabs(it->cx - o.cx) * image_size, std::fabs(it->cy - o.cy) * image_size});
    d.erase(it);
  }
  if (size_ok) *size_ok = sizes;
  return true;
}

}  // namespace

TEST(Scene, VocabularyAndPalette) {
  ASSERT_GE(shape_names().size(), 6u);
  ASSERT_GE(color_names().size(), 8u);
  for (size_t i = 0; i < shape_names().size(); ++i) EXPECT_EQ(mot::data::shape_index(shape_names()[i]), int(i));
  for (size_t i = 0; i < color_names().size(); ++i) EXPECT_EQ(mot::data::color_index(color_names()[i]), int(i));
  EXPECT_EQ(mot::data::shape_index("blob"), -1);
  EXPECT_EQ(mot::data::color_index("black"), -1);
  double min_dist = 1e9;
  for (size_t i = 0; i < color_names().size(); ++i)
    for (size_t j = i + 1; j < color_names().size(); ++j) {
      const auto &a = mot::data::color_rgb(int(i)), &b = mot::data::color_rgb(int(j));
      double d = 0;
      for (int k = 0; k < 3; ++k) d += (double(a[k]) - b[k]) * (double(a[k]) - b[k]);
      min_dist = std::min(min_dist, std::sqrt(d));
    }
  EXPECT_GT(min_dist, 80.0);
  EXPECT_THROW(mot::data::color_rgb(99), mot::Error);
}

TEST(Scene, Deterministic) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Rng r1(seed), r2(seed);
    const Scene a = random_scene(r1), b = random_scene(r2);
    ASSERT_EQ(a.objects.size(), b.objects.size());
    for (size_t i = 0; i < a.objects.size(); ++i) {
      EXPECT_EQ(a.objects[i].shape, b.objects[i].shape);
      EXPECT_EQ(a.objects[i].color, b.objects[i].color);
      EXPECT_EQ(a.objects[i].size, b.objects[i].size);
      EXPECT_EQ(a.objects[i].cx, b.objects[i].cx);
      EXPECT_EQ(a.objects[i].cy, b.objects[i].cy);
    }
    EXPECT_EQ(render_scene(a, 32).rgb, render_scene(b, 32).rgb);
    EXPECT_EQ(caption(a, r1), caption(b, r2));
    EXPECT_EQ(qa_text(a, r1), qa_text(b, r2));
  }
  Rng x(1), y(2);
  int differ = 0;
  for (int i = 0; i < 20; ++i) differ += render_scene(random_scene(x), 32).rgb != render_scene(random_scene(y), 32).rgb;
  EXPECT_GE(differ, 19);
}

TEST(Scene, PlacementInvariants) {
  Rng rng(7);
  std::set<int> shapes, colors;
  std::map<size_t, int> counts;
  int sizes[2] = {0, 0};
  for (int it = 0; it < 3000; ++it) {
    const int max_obj = 1 + it % mot::data::kMaxSceneObjects;
    const Scene s = random_scene(rng, it < 2000 ? 3 : max_obj);
    ASSERT_GE(s.objects.size(), 1u);
    ASSERT_LE(s.objects.size(), size_t(it < 2000 ? 3 : max_obj));
    if (it < 2000) ++counts[s.objects.size()];
    for (size_t i = 0; i < s.objects.size(); ++i) {
      const auto& o = s.objects[i];
      shapes.insert(o.shape), colors.insert(o.color), ++sizes[o.size];
      const float r = mot::data::object_radius(o.size);
      EXPECT_GE(o.cx - r, mot::data::kSceneMargin - 1e-6f);
      EXPECT_LE(o.cx + r, 1 - mot::data::kSceneMargin + 1e-6f);
      EXPECT_GE(o.cy - r, mot::data::kSceneMargin - 1e-6f);
      EXPECT_LE(o.cy + r, 1 - mot::data::kSceneMargin + 1e-6f);
      for (size_t j = 0; j < i; ++j) {
        const auto& p = s.objects[j];
        EXPECT_FALSE(p.shape == o.shape && p.color == o.color) << "duplicate (shape, colour)";
        const float need = r + mot::data::object_radius(p.size) + mot::data::kSceneGap;
        EXPECT_TRUE(std::fabs(p.cx - o.cx) >= need - 1e-6f || std::fabs(p.cy - o.cy) >= need - 1e-6f);
      }
    }
  }
  EXPECT_EQ(shapes.size(), shape_names().size());
  EXPECT_EQ(colors.size(), color_names().size());
  EXPECT_GT(sizes[0], 500);
  EXPECT_GT(sizes[1], 500);
  for (size_t n = 1; n <= 3; ++n) EXPECT_GT(counts[n], 500) << n << " objects";
  EXPECT_THROW(random_scene(rng, 0), mot::Error);
  EXPECT_THROW(random_scene(rng, mot::data::kMaxSceneObjects + 1), mot::Error);
}

TEST(Scene, CaptionsMentionExactlyTheGroundTruth) {
  Rng rng(11);
  std::set<std::string> distinct;
  int with_relation = 0, with_size = 0;
  for (int it = 0; it < 3000; ++it) {
    const Scene s = random_scene(rng, it % 4 == 3 ? 5 : 3);
    const std::string c = caption(s, rng);
    expect_lower_ascii(c);
    expect_mentions_exactly(s, c);
    expect_relations_hold(s, c);
    distinct.insert(c);
    const auto w = words_of(c);
    for (const auto& x : w) {
      with_relation += x == "left" || x == "right" || x == "above" || x == "below" || x == "over" || x == "under" ||
                       x == "beneath" || x == "beside" || x == "next";
      with_size += x == "small" || x == "large" || x == "big" || x == "little";
    }
    if (HasFailure()) break;
  }
  EXPECT_GT(distinct.size(), 2900u);
  EXPECT_GT(with_relation, 300);
  EXPECT_GT(with_size, 1000);
  // One scene, many phrasings.
  Rng r2(3);
  Scene two;
  two.objects = {{0, 0, 0, 0.25f, 0.5f}, {1, 2, 1, 0.7f, 0.5f}};
  std::set<std::string> phr;
  for (int i = 0; i < 200; ++i) {
    const std::string c = caption(two, r2);
    expect_relations_hold(two, c);
    phr.insert(c);
  }
  EXPECT_GE(phr.size(), 30u);
  Rng r3(5);
  std::printf("[scene] caption examples:\n");
  for (int i = 0; i < 4; ++i) std::printf("  %s\n", caption(random_scene(r3), r3).c_str());
}

TEST(Scene, QaTextMentionsExactlyTheGroundTruthAndAnswersRight) {
  Rng rng(13);
  std::map<std::string, int> kinds;
  for (int it = 0; it < 4000; ++it) {
    const Scene s = random_scene(rng, it % 4 == 3 ? 5 : 3);
    const std::string d = qa_text(s, rng);
    expect_lower_ascii(d);
    expect_mentions_exactly(s, d);
    ++kinds[check_answer(s, d)];
    if (HasFailure()) {
      std::printf("failing doc: %s\n", d.c_str());
      break;
    }
  }
  for (const char* k : {"count", "colour", "shape", "left/right", "above/below", "exists", "where", "size"})
    EXPECT_GT(kinds[k], 50) << k;
  EXPECT_EQ(kinds["?"], 0);
  Rng r3(6);
  std::printf("[scene] qa examples:\n");
  for (int i = 0; i < 4; ++i) std::printf("  %s\n", qa_text(random_scene(r3), r3).c_str());
}

TEST(Scene, RenderIsAntiAliasedOnBlack) {
  Scene s;
  s.objects = {{0, 6, 1, 0.5f, 0.5f}};  // large white circle
  const Image img = render_scene(s, 32);
  ASSERT_EQ(img.width, 32);
  ASSERT_EQ(img.height, 32);
  ASSERT_EQ(img.rgb.size(), 32u * 32 * 3);
  const auto& white = mot::data::color_rgb(6);
  int full = 0, partial = 0, black = 0;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      const uint8_t* p = img.at(x, y);
      if (p[0] == 0 && p[1] == 0 && p[2] == 0) ++black;
      else if (p[0] == white[0]) ++full;
      else if (p[0] > 0 && p[0] < white[0]) ++partial;
    }
  EXPECT_EQ(img.at(0, 0)[0], 0);  // background corner
  EXPECT_GT(full, 100);
  EXPECT_GT(partial, 16);  // the rim
  EXPECT_GT(black, 500);
  EXPECT_EQ(full + partial + black, 32 * 32);
  // Coloured edges are darker versions of the object colour (blend over black).
  s.objects = {{7, 5, 0, 0.3f, 0.6f}};  // small orange heart
  const Image h = render_scene(s, 32);
  const auto& orange = mot::data::color_rgb(5);
  int edges = 0;
  for (size_t i = 0; i < h.rgb.size(); i += 3)
    if (h.rgb[i] > 0 && h.rgb[i] < orange[0]) {
      ++edges;
      const double a = h.rgb[i] / double(orange[0]);
      EXPECT_NEAR(h.rgb[i + 1], a * orange[1], 1.5);
    }
  EXPECT_GT(edges, 5);
  // Every supported size renders the scene inside the frame.
  Rng rng(17);
  const Scene r = random_scene(rng);
  for (int size : {16, 24, 32, 48, 64, 96, 128}) {
    const Image im = render_scene(r, size);
    EXPECT_EQ(im.width, size);
    int lit = 0;
    for (uint8_t v : im.rgb) lit += v > 0;
    EXPECT_GT(lit, 0);
  }
  EXPECT_THROW(render_scene(r, 0), mot::Error);
  Scene bad;
  bad.objects = {{42, 0, 0, 0.5f, 0.5f}};
  EXPECT_THROW(render_scene(bad, 32), mot::Error);
  bad.objects = {{0, -1, 0, 0.5f, 0.5f}};
  EXPECT_THROW(render_scene(bad, 32), mot::Error);
  bad.objects = {{0, 0, 0, 1e30f, 0.5f}};
  EXPECT_THROW(render_scene(bad, 32), mot::Error);
  bad.objects = {{0, 0, 0, 0.5f, std::nanf("")}};
  EXPECT_THROW(render_scene(bad, 32), mot::Error);
  EXPECT_TRUE(render_scene(Scene{}, 32).rgb == std::vector<uint8_t>(32 * 32 * 3, 0));
}

TEST(Scene, RenderSpeed) {
  Rng rng(19);
  std::vector<Scene> scenes;
  for (int i = 0; i < 10000; ++i) scenes.push_back(random_scene(rng));
  uint64_t checksum = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& s : scenes) checksum += render_scene(s, 32).rgb[32 * 16 * 3 + 48];
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[scene] rendered 10000 random 32x32 scenes in %.3f s (%.1f us each, checksum %llu)\n", sec,
              sec * 1e6 / 10000, static_cast<unsigned long long>(checksum));
  RecordProperty("render_10000_32px_seconds", std::to_string(sec));
}

TEST(Scene, AnalyzeRecoversObjects32) {
  Rng rng(23);
  const int n = 500;
  int ok = 0, sizes_ok = 0;
  float max_pos_err = 0;
  for (int i = 0; i < n; ++i) {
    const Scene s = random_scene(rng);
    bool size_ok = false;
    if (matches(s, analyze_image(render_scene(s, 32)), 32, &size_ok, &max_pos_err)) ++ok, sizes_ok += size_ok;
  }
  const double acc = double(ok) / n;
  std::printf("[scene] analyze_image 32x32: %d/%d scenes fully recovered (%.1f%%), sizes right in %d, "
              "max centre error %.2f px\n", ok, n, 100 * acc, sizes_ok, max_pos_err);
  RecordProperty("analyze_accuracy_32", std::to_string(acc));
  EXPECT_GE(acc, 0.98);
  EXPECT_LT(max_pos_err, 1.0f);
}

TEST(Scene, AnalyzeRecoversEverySingleObject64) {
  Rng rng(29);
  int total = 0, ok = 0;
  for (int shape = 0; shape < int(shape_names().size()); ++shape)
    for (int color = 0; color < int(color_names().size()); ++color)
      for (int size = 0; size < 2; ++size)
        for (int rep = 0; rep < 2; ++rep) {
          const float r = mot::data::object_radius(size), lo = mot::data::kSceneMargin + r;
          Scene s;
          s.objects = {{shape, color, size, lo + float(rng.uniform()) * (1 - 2 * lo),
                        lo + float(rng.uniform()) * (1 - 2 * lo)}};
          bool size_ok = false;
          const bool m = matches(s, analyze_image(render_scene(s, 64)), 64, &size_ok) && size_ok;
          EXPECT_TRUE(m) << shape_names()[shape] << " " << color_names()[color] << " size " << size;
          ok += m, ++total;
        }
  for (int i = 0; i < 300; ++i) {
    const Scene s = random_scene(rng, 1);
    bool size_ok = false;
    const bool m = matches(s, analyze_image(render_scene(s, 64)), 64, &size_ok) && size_ok;
    EXPECT_TRUE(m);
    ok += m, ++total;
  }
  std::printf("[scene] analyze_image 64x64 single objects: %d/%d recovered (shape, colour, size)\n", ok, total);
  RecordProperty("analyze_accuracy_64_single", std::to_string(double(ok) / total));
}

TEST(Scene, AnalyzeOtherSizesAndEdgeCases) {
  for (int size : {16, 64, 128}) {
    Rng rng(31);
    int ok = 0;
    const int n = size == 128 ? 50 : 200;
    for (int i = 0; i < n; ++i) {
      const Scene s = random_scene(rng);
      ok += matches(s, analyze_image(render_scene(s, size)), size);
    }
    std::printf("[scene] analyze_image %dx%d: %d/%d scenes fully recovered\n", size, size, ok, n);
    EXPECT_GE(ok, size == 16 ? n * 3 / 4 : n * 49 / 50) << size;
  }
  EXPECT_TRUE(analyze_image(Image(32, 32)).empty());
  Rng rng(43);
  for (int i = 0; i < 200; ++i) {  // arbitrary pixels and tiny images: no crash, sane output
    Image im(1 + int(rng.below(40)), 1 + int(rng.below(40)));
    const int mode = i % 3;
    for (auto& v : im.rgb) v = mode == 0 ? uint8_t(rng.below(256)) : mode == 1 ? uint8_t(rng.below(2) * 255) : 0;
    if (mode == 2 && im.width > 4 && im.height > 4)
      for (int k = 0; k < 3; ++k) im.at(im.width / 2, im.height / 2)[k] = 255;
    for (const Detected& d : analyze_image(im)) {
      EXPECT_GE(d.shape, 0);
      EXPECT_LT(d.shape, int(shape_names().size()));
      EXPECT_GE(d.color, 0);
      EXPECT_LT(d.color, int(color_names().size()));
      EXPECT_TRUE(std::isfinite(d.cx) && std::isfinite(d.cy) && std::isfinite(d.radius) && d.area > 0);
    }
  }
  Image broken(8, 8);
  broken.rgb.resize(10);
  EXPECT_THROW(analyze_image(broken), mot::Error);
}

// Generated images will be soft and noisy: a blur plus Gaussian noise must not break analysis.
TEST(Scene, AnalyzeToleratesBlurAndNoise) {
  Rng rng(37), noise(41);
  const int n = 300, S = 32;
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    const Scene s = random_scene(rng);
    const Image im = render_scene(s, S);
    Image soft = im;
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x)
        for (int k = 0; k < 3; ++k) {
          float acc = 0, wsum = 0;  // [1 2 1] x [1 2 1] blur
          for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
              const int X = x + dx, Y = y + dy;
              if (X < 0 || Y < 0 || X >= S || Y >= S) continue;
              const float w = float((2 - std::abs(dx)) * (2 - std::abs(dy)));
              acc += w * im.at(X, Y)[k], wsum += w;
            }
          const double v = acc / wsum + 8.0 * noise.normal();
          soft.at(x, y)[k] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
        }
    ok += matches(s, analyze_image(soft), S);
  }
  std::printf("[scene] analyze_image 32x32 blurred + noise sigma 8: %d/%d scenes fully recovered\n", ok, n);
  RecordProperty("analyze_accuracy_32_blur_noise", std::to_string(double(ok) / n));
  EXPECT_GE(ok, n * 9 / 10);
}
