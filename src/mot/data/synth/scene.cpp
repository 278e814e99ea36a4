// Procedural scenes: generation, anti-aliased rendering, captions / QA text, and the
// pixel analyser. See scene.hpp for the geometry conventions.
#include "mot/data/synth/scene.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "mot/core/error.hpp"

namespace mot::data {

namespace {

enum ShapeId { kCircle, kSquare, kTriangle, kDiamond, kCross, kRing, kStar, kHeart, kNumShapes };
constexpr int kNumColors = 8;

// ---------------------------------------------------------------------------------------
// Shape membership in the unit box [-1, 1]^2 (u right, v down).

struct StarPoly {
  float x[10], y[10];
  StarPoly() {
    const double kPi = 3.14159265358979323846;
    for (int k = 0; k < 10; ++k) {
      const double a = -kPi / 2 + k * kPi / 5, rad = (k % 2) ? 0.5 : 1.0;
      x[k] = static_cast<float>(rad * std::cos(a));
      y[k] = static_cast<float>(rad * std::sin(a));
    }
  }
};
const StarPoly kStarPoly;

inline bool in_star(float u, float v) {
  const float d = u * u + v * v;
  if (d > 1.f) return false;
  if (d <= 0.1636f) return true;  // inside the inner pentagon's incircle (0.5 cos 36deg)^2
  bool in = false;                 // crossing-number test on the 10-gon
  for (int i = 0, j = 9; i < 10; j = i++) {
    const float yi = kStarPoly.y[i], yj = kStarPoly.y[j];
    if ((yi > v) != (yj > v)) {
      const float xc = kStarPoly.x[i] + (v - yi) * (kStarPoly.x[j] - kStarPoly.x[i]) / (yj - yi);
      if (u < xc) in = !in;
    }
  }
  return in;
}

inline bool in_heart(float u, float v) {
  const float a = std::fabs(u);
  const float dx = a - 0.48f, dy = v + 0.38f;
  if (dx * dx + dy * dy <= 0.2704f) return true;  // the two lobes (r 0.52)
  return v >= -0.23f && v <= 0.95f && a <= (0.95f - v) * (0.955f / 1.18f);
}

template <int S>
inline bool inside(float u, float v) {
  if constexpr (S == kCircle) {
    return u * u + v * v <= 1.f;
  } else if constexpr (S == kSquare) {
    return std::fabs(u) <= 0.85f && std::fabs(v) <= 0.85f;
  } else if constexpr (S == kTriangle) {  // apex up
    return v <= 0.8f && std::fabs(u) <= (v + 0.95f) * (1.f / 1.75f);
  } else if constexpr (S == kDiamond) {
    return std::fabs(u) + std::fabs(v) <= 1.f;
  } else if constexpr (S == kCross) {
    const float a = std::fabs(u), b = std::fabs(v);
    return (a <= 0.34f && b <= 0.95f) || (b <= 0.34f && a <= 0.95f);
  } else if constexpr (S == kRing) {
    const float d = u * u + v * v;
    return d <= 1.f && d >= 0.3025f;  // inner radius 0.55
  } else if constexpr (S == kStar) {
    return in_star(u, v);
  } else {
    return in_heart(u, v);
  }
}

// Coverage (0..1) of pixel [x, x+1) x [y, y+1) by a shape of radius r (pixels) centred at
// (cx, cy) (pixels), from a 4x4 grid of samples.
template <int S>
inline float cov16(int x, int y, float cx, float cy, float inv_r) {
  int n = 0;
  for (int j = 0; j < 4; ++j) {
    const float v = (static_cast<float>(y) + (j + 0.5f) * 0.25f - cy) * inv_r;
    for (int i = 0; i < 4; ++i) {
      const float u = (static_cast<float>(x) + (i + 0.5f) * 0.25f - cx) * inv_r;
      n += inside<S>(u, v) ? 1 : 0;
    }
  }
  return static_cast<float>(n) * (1.f / 16.f);
}

// Calls f(x, y, coverage) for every pixel of the box [x0, x1] x [y0, y1].
template <int S, class F>
inline void cover_box_t(int x0, int x1, int y0, int y1, float cx, float cy, float inv_r, F&& f) {
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) f(x, y, cov16<S>(x, y, cx, cy, inv_r));
}

template <class F>
void cover_box(int shape, int x0, int x1, int y0, int y1, float cx, float cy, float r, F&& f) {
  const float inv_r = 1.f / r;
  switch (shape) {
    case kCircle: return cover_box_t<kCircle>(x0, x1, y0, y1, cx, cy, inv_r, f);
    case kSquare: return cover_box_t<kSquare>(x0, x1, y0, y1, cx, cy, inv_r, f);
    case kTriangle: return cover_box_t<kTriangle>(x0, x1, y0, y1, cx, cy, inv_r, f);
    case kDiamond: return cover_box_t<kDiamond>(x0, x1, y0, y1, cx, cy, inv_r, f);
    case kCross: return cover_box_t<kCross>(x0, x1, y0, y1, cx, cy, inv_r, f);
    case kRing: return cover_box_t<kRing>(x0, x1, y0, y1, cx, cy, inv_r, f);
    case kStar: return cover_box_t<kStar>(x0, x1, y0, y1, cx, cy, inv_r, f);
    default: return cover_box_t<kHeart>(x0, x1, y0, y1, cx, cy, inv_r, f);
  }
}

bool inside_dyn(int shape, float u, float v) {
  switch (shape) {
    case kCircle: return inside<kCircle>(u, v);
    case kSquare: return inside<kSquare>(u, v);
    case kTriangle: return inside<kTriangle>(u, v);
    case kDiamond: return inside<kDiamond>(u, v);
    case kCross: return inside<kCross>(u, v);
    case kRing: return inside<kRing>(u, v);
    case kStar: return inside<kStar>(u, v);
    default: return inside<kHeart>(u, v);
  }
}

// Area and centroid of each shape in unit-box coordinates (fine grid, computed once).
struct ShapeMoments {
  double area[kNumShapes], cu[kNumShapes], cv[kNumShapes];
  ShapeMoments() {
    const int n = 512;
    const double h = 2.0 / n;
    for (int s = 0; s < kNumShapes; ++s) {
      double a = 0, su = 0, sv = 0;
      for (int j = 0; j < n; ++j) {
        const double v = -1 + (j + 0.5) * h;
        for (int i = 0; i < n; ++i) {
          const double u = -1 + (i + 0.5) * h;
          if (inside_dyn(s, static_cast<float>(u), static_cast<float>(v))) a += 1, su += u, sv += v;
        }
      }
      area[s] = a * h * h;
      cu[s] = su / a;
      cv[s] = sv / a;
    }
  }
};
const ShapeMoments& moments() {
  static const ShapeMoments m;
  return m;
}

const std::array<uint8_t, 3> kPalette[kNumColors] = {
    {235, 40, 40},    // red
    {40, 200, 60},    // green
    {50, 100, 255},   // blue
    {240, 230, 40},   // yellow
    {165, 70, 230},   // purple
    {255, 128, 0},    // orange
    {240, 240, 240},  // white
    {40, 215, 225},   // cyan
};

void check_object(const SceneObject& o) {
  if (o.shape < 0 || o.shape >= kNumShapes) fail("scene: shape index ", o.shape, " out of range");
  if (o.color < 0 || o.color >= kNumColors) fail("scene: colour index ", o.color, " out of range");
  if (o.size != 0 && o.size != 1) fail("scene: size must be 0 or 1, got ", o.size);
  if (!(o.cx >= 0.f && o.cx <= 1.f && o.cy >= 0.f && o.cy <= 1.f))
    fail("scene: object centre (", o.cx, ", ", o.cy, ") outside [0, 1]");
}

// ---------------------------------------------------------------------------------------
// Text helpers.

template <size_t N>
const char* pick(Rng& rng, const char* const (&words)[N]) {
  return words[rng.below(N)];
}

std::string with_article(const std::string& phrase) {
  const char c = phrase.empty() ? 'x' : phrase[0];
  const bool vowel = c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
  return (vowel ? "an " : "a ") + phrase;
}

const char* number_word(size_t n) {
  static const char* const kWords[] = {"zero", "one", "two", "three", "four", "five",
                                       "six",  "seven", "eight", "nine", "ten"};
  return n <= 10 ? kWords[n] : "many";
}

std::string plural(const std::string& shape) { return shape == "cross" ? shape + "es" : shape + "s"; }

std::string join_list(const std::vector<std::string>& items, Rng& rng) {
  if (items.empty()) return "";
  if (items.size() == 1) return items[0];
  std::string out;
  for (size_t i = 0; i + 1 < items.size(); ++i) out += (i ? ", " : "") + items[i];
  out += (items.size() > 2 && rng.below(2)) ? ", and " : " and ";
  return out + items.back();
}

// "colour shape" with an optional size word.
std::string obj_words(const SceneObject& o, bool size_word, Rng& rng) {
  static const char* const kSmall[] = {"small", "little"};
  static const char* const kLarge[] = {"large", "big"};
  std::string w;
  if (size_word) w = std::string(o.size ? pick(rng, kLarge) : pick(rng, kSmall)) + " ";
  return w + color_names()[o.color] + " " + shape_names()[o.shape];
}

std::string ref(const SceneObject& o) { return "the " + color_names()[o.color] + " " + shape_names()[o.shape]; }

enum Rel { kNoRel, kLeftOf, kRightOf, kAbove, kBelow };

float radius_of(const SceneObject& o) { return object_radius(o.size); }

// "a REL b", stated only when the boxes are separated along the dominant axis.
Rel relation(const SceneObject& a, const SceneObject& b) {
  const float dx = b.cx - a.cx, dy = b.cy - a.cy, need = radius_of(a) + radius_of(b);
  if (std::fabs(dx) >= std::fabs(dy) && std::fabs(dx) > need) return dx > 0 ? kLeftOf : kRightOf;
  if (std::fabs(dy) > std::fabs(dx) && std::fabs(dy) > need) return dy > 0 ? kAbove : kBelow;
  return kNoRel;
}

bool same_row_apart(const SceneObject& a, const SceneObject& b) {  // same row, horizontally apart
  return std::fabs(b.cy - a.cy) < 0.5f * std::min(radius_of(a), radius_of(b)) &&
         std::fabs(b.cx - a.cx) > radius_of(a) + radius_of(b);
}

std::string rel_phrase(Rel r, bool side, Rng& rng) {
  static const char* const kLeft[] = {"to the left of", "left of", "on the left of"};
  static const char* const kRight[] = {"to the right of", "right of", "on the right of"};
  static const char* const kUp[] = {"above", "over"};
  static const char* const kDown[] = {"below", "under", "beneath"};
  static const char* const kNext[] = {"next to", "beside"};
  if (side && rng.below(3) == 0) return pick(rng, kNext);
  switch (r) {
    case kLeftOf: return pick(rng, kLeft);
    case kRightOf: return pick(rng, kRight);
    case kAbove: return pick(rng, kUp);
    case kBelow: return pick(rng, kDown);
    default: return "and";
  }
}

// Absolute position in the image: horizontal and vertical thirds, 0 low, 1 centre, 2 high,
// -1 when not clear-cut.
int region_axis(float c) {
  if (c < 0.4f) return 0;
  if (c > 0.6f) return 2;
  if (std::fabs(c - 0.5f) < 0.06f) return 1;
  return -1;
}
bool has_region(const SceneObject& o) { return region_axis(o.cx) >= 0 && region_axis(o.cy) >= 0; }

// "on the left", "in the top right corner", ...; "" when not clear-cut.
std::string region(const SceneObject& o, Rng& rng) {
  const int h = region_axis(o.cx), v = region_axis(o.cy);
  if (h < 0 || v < 0) return "";
  if (h == 1 && v == 1) return rng.below(2) ? "in the center" : "in the middle";
  if (v == 1) return h == 0 ? "on the left" : "on the right";
  if (h == 1) return v == 0 ? "at the top" : "at the bottom";
  std::string corner = std::string(v == 0 ? "top " : "bottom ") + (h == 0 ? "left" : "right");
  return rng.below(2) ? "in the " + corner : "in the " + corner + " corner";
}

std::vector<int> shuffled_order(size_t n, Rng& rng) {
  std::vector<int> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = static_cast<int>(i);
  for (size_t i = n; i > 1; --i) std::swap(idx[i - 1], idx[rng.below(i)]);
  return idx;
}

}  // namespace

// ---------------------------------------------------------------------------------------

Relation relation_of(const SceneObject& a, const SceneObject& b) {
  switch (relation(a, b)) {
    case kLeftOf: return Relation::left_of;
    case kRightOf: return Relation::right_of;
    case kAbove: return Relation::above;
    case kBelow: return Relation::below;
    default: return Relation::none;
  }
}

bool side_by_side(const SceneObject& a, const SceneObject& b) { return same_row_apart(a, b); }

std::array<int, 2> region_of(const SceneObject& o) { return {region_axis(o.cx), region_axis(o.cy)}; }

const std::vector<std::string>& shape_names() {
  static const std::vector<std::string> kNames = {"circle", "square", "triangle", "diamond",
                                                  "cross",  "ring",   "star",     "heart"};
  return kNames;
}

const std::vector<std::string>& color_names() {
  static const std::vector<std::string> kNames = {"red",    "green",  "blue",  "yellow",
                                                  "purple", "orange", "white", "cyan"};
  return kNames;
}

const std::array<uint8_t, 3>& color_rgb(int color) {
  if (color < 0 || color >= kNumColors) fail("scene: colour index ", color, " out of range");
  return kPalette[color];
}

int shape_index(std::string_view name) {
  const auto& n = shape_names();
  for (size_t i = 0; i < n.size(); ++i)
    if (n[i] == name) return static_cast<int>(i);
  return -1;
}

int color_index(std::string_view name) {
  const auto& n = color_names();
  for (size_t i = 0; i < n.size(); ++i)
    if (n[i] == name) return static_cast<int>(i);
  return -1;
}

Scene random_scene(Rng& rng, int max_objects) {
  if (max_objects < 1 || max_objects > kMaxSceneObjects)
    fail("random_scene: max_objects must be in [1, ", kMaxSceneObjects, "], got ", max_objects);
  const int n = 1 + static_cast<int>(rng.below(static_cast<uint64_t>(max_objects)));
  auto fits = [](const Scene& s, const SceneObject& o) {
    const float r = object_radius(o.size);
    for (const auto& p : s.objects) {
      const float need = r + object_radius(p.size) + kSceneGap;
      if (std::fabs(p.cx - o.cx) < need && std::fabs(p.cy - o.cy) < need) return false;
    }
    return true;
  };
  Scene s;
  for (int attempt = 0; attempt < 10000; ++attempt) {
    s.objects.clear();
    for (int i = 0; i < n; ++i) {
      SceneObject o;
      for (;;) {  // unique (shape, colour)
        o.shape = static_cast<int>(rng.below(kNumShapes));
        o.color = static_cast<int>(rng.below(kNumColors));
        bool dup = false;
        for (const auto& p : s.objects) dup |= p.shape == o.shape && p.color == o.color;
        if (!dup) break;
      }
      o.size = static_cast<int>(rng.below(2));
      bool placed = false;
      for (int size = o.size; size >= 0 && !placed; --size) {  // a large one that does not fit shrinks
        o.size = size;
        const float r = object_radius(size), lo = kSceneMargin + r, span = 1.f - 2 * lo;
        for (int t = 0; t < 100 && !placed; ++t) {
          o.cx = lo + span * static_cast<float>(rng.uniform());
          o.cy = lo + span * static_cast<float>(rng.uniform());
          placed = fits(s, o);
        }
      }
      if (!placed) break;
      s.objects.push_back(o);
    }
    if (static_cast<int>(s.objects.size()) == n) return s;
  }
  fail("random_scene: could not place ", n, " objects");  // not reached for n <= kMaxSceneObjects
}

Image render_scene(const Scene& s, int image_size) {
  if (image_size < 4 || image_size > 4096) fail("render_scene: image_size must be in [4, 4096], got ", image_size);
  Image img(image_size, image_size);
  const float W = static_cast<float>(image_size);
  for (const auto& o : s.objects) {
    check_object(o);
    const float cx = o.cx * W, cy = o.cy * W, r = object_radius(o.size) * W;
    const int x0 = std::max(0, static_cast<int>(std::floor(cx - r)));
    const int x1 = std::min(image_size - 1, static_cast<int>(std::floor(cx + r)));
    const int y0 = std::max(0, static_cast<int>(std::floor(cy - r)));
    const int y1 = std::min(image_size - 1, static_cast<int>(std::floor(cy + r)));
    if (x0 > x1 || y0 > y1) continue;
    const auto& c = kPalette[o.color];
    cover_box(o.shape, x0, x1, y0, y1, cx, cy, r, [&](int x, int y, float a) {
      if (a <= 0.f) return;
      uint8_t* p = img.at(x, y);
      for (int k = 0; k < 3; ++k)
        p[k] = static_cast<uint8_t>(std::lround(p[k] * (1.f - a) + c[k] * a));
    });
  }
  return img;
}

std::string caption(const Scene& s, Rng& rng) {
  const size_t n = s.objects.size();
  if (n == 0) {
    static const char* const kEmpty[] = {"an empty black image.", "nothing but a black background."};
    return pick(rng, kEmpty);
  }
  for (const auto& o : s.objects) check_object(o);
  const std::vector<int> order = shuffled_order(n, rng);
  const int size_mode = static_cast<int>(rng.below(3));  // 0 no size words, 1 all, 2 per object
  std::vector<std::string> words(n);  // in caption order
  for (size_t i = 0; i < n; ++i) {
    const bool sz = size_mode == 1 || (size_mode == 2 && rng.below(2));
    words[i] = obj_words(s.objects[order[i]], sz, rng);
  }
  auto a = [&](size_t i) { return with_article(words[i]); };

  if (n == 1) {
    const std::string reg = region(s.objects[0], rng);
    const std::string where = reg.empty() ? "" : " " + reg;
    switch (rng.below(7)) {
      case 0: return a(0) + ".";
      case 1: return "there is " + a(0) + where + ".";
      case 2: return a(0) + " on a black background.";
      case 3: return "an image of " + a(0) + where + ".";
      case 4: return "a picture showing " + a(0) + where + ".";
      case 5: return "a single " + words[0] + where + ".";
      default: return a(0) + where + ".";
    }
  }
  const SceneObject& A = s.objects[order[0]];
  const SceneObject& B = s.objects[order[1]];
  const Rel ab = relation(A, B), ba = relation(B, A);
  const bool side = same_row_apart(A, B);
  std::vector<std::string> all(n), rest;  // every object / the ones after the first two
  for (size_t i = 0; i < n; ++i) {
    all[i] = a(i);
    if (i >= 2) rest.push_back(all[i]);
  }

  if (n == 2) {
    const int t = static_cast<int>(rng.below(8));
    if (ab != kNoRel) {
      switch (t) {
        case 1: return a(0) + " " + rel_phrase(ab, side, rng) + " " + a(1) + ".";
        case 2: return "there is " + a(0) + " " + rel_phrase(ab, side, rng) + " " + a(1) + ".";
        case 4: return "the " + words[0] + " is " + rel_phrase(ab, side, rng) + " the " + words[1] + ".";
        case 6: return a(0) + ". " + a(1) + " is " + rel_phrase(ba, side, rng) + " it.";
        default: break;
      }
    }
    switch (t) {
      case 3: return "two shapes: " + a(0) + " and " + a(1) + ".";
      case 5: return "an image with " + a(0) + " and " + a(1) + ".";
      case 7: return a(0) + " and " + a(1) + " on a black background.";
      default: return a(0) + " and " + a(1) + ".";
    }
  }
  const int t = static_cast<int>(rng.below(6));
  if (ab != kNoRel && t == 3)
    return a(0) + " " + rel_phrase(ab, side, rng) + " " + a(1) + ", and " + join_list(rest, rng) + ".";
  if (ab != kNoRel && t == 4)
    return "the " + words[0] + " is " + rel_phrase(ab, side, rng) + " the " + words[1] + ". there is also " +
           join_list(rest, rng) + ".";
  switch (t) {
    case 1: return std::string(number_word(n)) + " shapes: " + join_list(all, rng) + ".";
    case 2: return std::string("there are ") + number_word(n) + " objects: " + join_list(all, rng) + ".";
    case 5: return "an image of " + join_list(all, rng) + " on a black background.";
    default: return join_list(all, rng) + ".";
  }
}

std::string qa_text(const Scene& s, Rng& rng) {
  const size_t n = s.objects.size();
  if (n == 0) fail("qa_text: empty scene");
  const std::string desc = caption(s, rng);
  int shape_count[kNumShapes] = {}, color_count[kNumColors] = {};
  for (const auto& o : s.objects) ++shape_count[o.shape], ++color_count[o.color];

  enum Kind { kColorOfShape, kShapeOfColor, kCountAll, kCountColor, kCountShape, kLeftRight, kUpDown, kSize,
              kExists, kWhere, kNumKinds };
  // Candidates per kind: object indices (or pairs encoded as i * n + j) with an unambiguous answer.
  std::vector<size_t> cand[kNumKinds];
  for (size_t i = 0; i < n; ++i) {
    const auto& o = s.objects[i];
    if (shape_count[o.shape] == 1) cand[kColorOfShape].push_back(i);
    if (color_count[o.color] == 1) cand[kShapeOfColor].push_back(i);
    cand[kCountColor].push_back(i);
    cand[kCountShape].push_back(i);
    cand[kSize].push_back(i);
    cand[kExists].push_back(i);
    if (has_region(o)) cand[kWhere].push_back(i);
    for (size_t j = i + 1; j < n; ++j) {
      const auto& p = s.objects[j];
      const float need = radius_of(o) + radius_of(p);
      if (std::fabs(p.cx - o.cx) > need) cand[kLeftRight].push_back(i * n + j);
      if (std::fabs(p.cy - o.cy) > need) cand[kUpDown].push_back(i * n + j);
    }
  }
  cand[kCountAll].push_back(0);
  std::vector<int> kinds;
  for (int k = 0; k < kNumKinds; ++k)
    if (!cand[k].empty()) kinds.push_back(k);
  const int kind = kinds[rng.below(kinds.size())];
  const size_t c = cand[kind][rng.below(cand[kind].size())];

  std::string q, ans;
  static const char* const kColourWord[] = {"colour", "color"};
  switch (kind) {
    case kColorOfShape: {
      const auto& o = s.objects[c];
      q = rng.below(2) ? std::string("what ") + pick(rng, kColourWord) + " is the " + shape_names()[o.shape] + "?"
                       : std::string("which ") + pick(rng, kColourWord) + " does the " + shape_names()[o.shape] +
                             " have?";
      ans = color_names()[o.color];
      break;
    }
    case kShapeOfColor: {
      const auto& o = s.objects[c];
      switch (rng.below(3)) {
        case 0: q = "what shape is the " + color_names()[o.color] + " object?"; break;
        case 1: q = "which shape is " + color_names()[o.color] + "?"; break;
        default: q = "what is the " + color_names()[o.color] + " shape?"; break;
      }
      ans = shape_names()[o.shape];
      break;
    }
    case kCountAll: {
      static const char* const kQ[] = {"how many objects are there?", "how many shapes are in the image?",
                                       "how many shapes can you see?"};
      q = pick(rng, kQ);
      ans = number_word(n);
      break;
    }
    case kCountColor: {
      const int col = s.objects[c].color;
      q = "how many " + color_names()[col] + (rng.below(2) ? " shapes" : " objects") + " are there?";
      ans = number_word(static_cast<size_t>(color_count[col]));
      break;
    }
    case kCountShape: {
      const int sh = s.objects[c].shape;
      q = "how many " + plural(shape_names()[sh]) + " are there?";
      ans = number_word(static_cast<size_t>(shape_count[sh]));
      break;
    }
    case kLeftRight:
    case kUpDown: {
      size_t i = c / n, j = c % n;
      if (rng.below(2)) std::swap(i, j);  // mention order
      const auto& o = s.objects[i];
      const auto& p = s.objects[j];
      const bool horiz = kind == kLeftRight, low_side = rng.below(2);  // left / higher
      static const char* const kLeftQ[] = {"which is further left", "which one is more to the left"};
      static const char* const kRightQ[] = {"which is further right", "which one is more to the right"};
      static const char* const kUpQ[] = {"which is higher", "which one is closer to the top"};
      static const char* const kDownQ[] = {"which is lower", "which one is closer to the bottom"};
      const char* head = horiz ? (low_side ? pick(rng, kLeftQ) : pick(rng, kRightQ))
                               : (low_side ? pick(rng, kUpQ) : pick(rng, kDownQ));
      q = std::string(head) + ", " + ref(o) + " or " + ref(p) + "?";
      const float a = horiz ? o.cx : o.cy, b = horiz ? p.cx : p.cy;
      ans = ((a < b) == low_side) ? ref(o) : ref(p);
      break;
    }
    case kSize: {
      const auto& o = s.objects[c];
      switch (rng.below(3)) {
        case 0: q = "is " + ref(o) + " small or large?"; ans = o.size ? "large" : "small"; break;
        case 1: q = "is " + ref(o) + " big or small?"; ans = o.size ? "big" : "small"; break;
        default: q = "what size is " + ref(o) + "?"; ans = o.size ? "large" : "small"; break;
      }
      break;
    }
    case kExists: {
      const auto& o = s.objects[c];
      q = "is there " + with_article(color_names()[o.color] + " " + shape_names()[o.shape]) + "?";
      ans = "yes";
      break;
    }
    default: {  // kWhere
      const auto& o = s.objects[c];
      q = "where is " + ref(o) + "?";
      ans = region(o, rng);
      break;
    }
  }
  return desc + " question: " + q + " answer: " + ans + ".";
}

// ---------------------------------------------------------------------------------------
// Analysis.

namespace {

struct Fit {
  int shape, blur;
  float cx, cy, r, err;
};

// Templates are also compared after a Gaussian blur of these standard deviations (pixels),
// so soft-edged images (e.g. generated ones) still match the right shape.
constexpr int kBlurLevels = 4;
constexpr int kBlurTaps = 3;  // kernel radius
struct BlurKernels {
  float w[kBlurLevels][2 * kBlurTaps + 1];
  BlurKernels() {
    const float sigma[kBlurLevels] = {0.f, 0.6f, 1.0f, 1.5f};
    for (int b = 0; b < kBlurLevels; ++b) {
      float sum = 0;
      for (int k = -kBlurTaps; k <= kBlurTaps; ++k) {
        const float v = b == 0 ? (k == 0 ? 1.f : 0.f) : std::exp(-0.5f * k * k / (sigma[b] * sigma[b]));
        w[b][k + kBlurTaps] = v;
        sum += v;
      }
      for (float& v : w[b]) v /= sum;
    }
  }
};
const BlurKernels kBlur;

// Coverage map of one component over a region, and the template fit against it.
struct CoverageMap {
  int x0, y0, w, h;
  std::vector<float> alpha;  // w * h
  double sum_sq = 0;         // sum of alpha^2
  mutable std::vector<float> t1, t2;  // scratch for blurred templates
  float at(int x, int y) const {
    const int i = x - x0, j = y - y0;
    return (i < 0 || j < 0 || i >= w || j >= h) ? 0.f : alpha[static_cast<size_t>(j) * w + i];
  }
  // Sum of squared residuals between the map and a (blurred) template, zero outside both.
  float error(int shape, int blur, float cx, float cy, float r) const {
    const int tx0 = static_cast<int>(std::floor(cx - r)), tx1 = static_cast<int>(std::floor(cx + r));
    const int ty0 = static_cast<int>(std::floor(cy - r)), ty1 = static_cast<int>(std::floor(cy + r));
    double e = sum_sq;  // pixels the template does not reach keep their alpha^2
    if (blur == 0) {
      cover_box(shape, tx0, tx1, ty0, ty1, cx, cy, r, [&](int x, int y, float t) {
        const float a = at(x, y);
        e += (t - a) * (t - a) - a * a;
      });
      return static_cast<float>(e);
    }
    // Template on a box padded by the kernel radius, then a separable blur.
    const int P = kBlurTaps, bx0 = tx0 - P, by0 = ty0 - P;
    const int bw = tx1 - tx0 + 1 + 2 * P, bh = ty1 - ty0 + 1 + 2 * P;
    t1.assign(static_cast<size_t>(bw) * bh, 0.f);
    t2.assign(static_cast<size_t>(bw) * bh, 0.f);
    cover_box(shape, tx0, tx1, ty0, ty1, cx, cy, r,
              [&](int x, int y, float t) { t1[static_cast<size_t>(y - by0) * bw + (x - bx0)] = t; });
    const float* k = kBlur.w[blur];
    for (int j = P; j < bh - P; ++j)  // horizontal: only rows the template touches
      for (int i = 0; i < bw; ++i) {
        float v = 0;
        for (int d = -P; d <= P; ++d) {
          const int ii = i + d;
          if (ii >= 0 && ii < bw) v += k[d + P] * t1[static_cast<size_t>(j) * bw + ii];
        }
        t2[static_cast<size_t>(j) * bw + i] = v;
      }
    for (int j = 0; j < bh; ++j)
      for (int i = 0; i < bw; ++i) {
        float v = 0;
        for (int d = -P; d <= P; ++d) {
          const int jj = j + d;
          if (jj >= 0 && jj < bh) v += k[d + P] * t2[static_cast<size_t>(jj) * bw + i];
        }
        const float a = at(bx0 + i, by0 + j);
        e += (v - a) * (v - a) - a * a;
      }
    return static_cast<float>(e);
  }
};

Fit refine(const CoverageMap& m, Fit f) {
  float step_c = 0.3f, step_r = 0.04f * f.r;
  for (int round = 0; round < 3; ++round) {
    for (int moves = 0; moves < 12; ++moves) {
      bool improved = false;
      for (int k = 0; k < 6; ++k) {
        Fit g = f;
        const float sign = (k % 2) ? -1.f : 1.f;
        if (k < 2) g.cx += sign * step_c;
        else if (k < 4) g.cy += sign * step_c;
        else g.r += sign * step_r;
        if (g.r <= 0.5f) continue;
        g.err = m.error(g.shape, g.blur, g.cx, g.cy, g.r);
        if (g.err < f.err) f = g, improved = true;
      }
      if (!improved) break;
    }
    step_c *= 0.5f;
    step_r *= 0.5f;
  }
  return f;
}

}  // namespace

std::vector<Detected> analyze_image(const Image& img) {
  const int W = img.width, H = img.height;
  if (W <= 0 || H <= 0 || img.rgb.size() != static_cast<size_t>(W) * H * 3)
    fail("analyze_image: inconsistent image ", W, "x", H, " with ", img.rgb.size(), " bytes");
  const size_t npix = static_cast<size_t>(W) * H;

  // Background: per-channel median of the border pixels.
  float bg[3];
  {
    std::vector<uint8_t> border[3];
    for (int x = 0; x < W; ++x)
      for (int y : {0, H - 1})
        for (int k = 0; k < 3; ++k) border[k].push_back(img.at(x, y)[k]);
    for (int y = 1; y + 1 < H; ++y)
      for (int x : {0, W - 1})
        for (int k = 0; k < 3; ++k) border[k].push_back(img.at(x, y)[k]);
    for (int k = 0; k < 3; ++k) {
      auto mid = border[k].begin() + static_cast<std::ptrdiff_t>(border[k].size() / 2);
      std::nth_element(border[k].begin(), mid, border[k].end());
      bg[k] = *mid;
    }
  }
  std::vector<float> diff(npix);
  for (size_t i = 0; i < npix; ++i) {
    float d = 0;
    for (int k = 0; k < 3; ++k) d = std::max(d, std::fabs(img.rgb[i * 3 + k] - bg[k]));
    diff[i] = d;
  }
  // Foreground threshold: 48 levels, raised to 4x the border's median deviation on noisy images.
  float threshold = 48.f;
  {
    std::vector<float> bd;
    for (int x = 0; x < W; ++x)
      for (int y : {0, H - 1}) bd.push_back(diff[static_cast<size_t>(y) * W + x]);
    for (int y = 1; y + 1 < H; ++y)
      for (int x : {0, W - 1}) bd.push_back(diff[static_cast<size_t>(y) * W + x]);
    auto mid = bd.begin() + static_cast<std::ptrdiff_t>(bd.size() / 2);
    std::nth_element(bd.begin(), mid, bd.end());
    threshold = std::max(threshold, 4.f * *mid);
  }

  // Connected components, 8-neighbour.
  std::vector<int> label(npix, -1);
  std::vector<std::vector<int>> comps;
  std::vector<int> stack;
  for (size_t start = 0; start < npix; ++start) {
    if (label[start] != -1 || diff[start] <= threshold) continue;
    const int id = static_cast<int>(comps.size());
    comps.emplace_back();
    label[start] = id;
    stack.assign(1, static_cast<int>(start));
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      comps[id].push_back(p);
      const int px = p % W, py = p / W;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int qx = px + dx, qy = py + dy;
          if (qx < 0 || qy < 0 || qx >= W || qy >= H) continue;
          const int q = qy * W + qx;
          if (label[q] == -1 && diff[q] > threshold) label[q] = id, stack.push_back(q);
        }
    }
  }

  const ShapeMoments& mom = moments();
  std::vector<Detected> out;
  for (size_t id = 0; id < comps.size(); ++id) {
    const auto& pix = comps[id];
    if (pix.size() < 3) continue;
    // Colour: mean of the core (>= 70% of the component's peak difference), nearest palette
    // colour allowing a brightness factor in [0.55, 1]. Faint blobs (peak under twice the
    // threshold) are noise, not objects.
    float peak = 0;
    for (int p : pix) peak = std::max(peak, diff[p]);
    if (peak < 2 * threshold) continue;
    double mean[3] = {0, 0, 0};
    int ncore = 0;
    for (int p : pix)
      if (diff[p] >= 0.7f * peak) {
        for (int k = 0; k < 3; ++k) mean[k] += img.rgb[static_cast<size_t>(p) * 3 + k] - bg[k];
        ++ncore;
      }
    for (double& m : mean) m /= ncore;
    int color = 0;
    double best = 1e300, qv[3] = {0, 0, 0}, qq = 1;
    for (int c = 0; c < kNumColors; ++c) {
      double q[3], dot = 0, n2 = 0;
      for (int k = 0; k < 3; ++k) q[k] = kPalette[c][k] - bg[k], dot += mean[k] * q[k], n2 += q[k] * q[k];
      if (n2 < 1) continue;
      const double a = std::clamp(dot / n2, 0.55, 1.0);
      double d = 0;
      for (int k = 0; k < 3; ++k) d += (mean[k] - a * q[k]) * (mean[k] - a * q[k]);
      if (d < best) best = d, color = c, qq = n2, std::copy(q, q + 3, qv);
    }

    // Coverage map over the component's box + 2 px: its own pixels and the unlabelled
    // (faint edge) pixels touching them.
    int bx0 = W, by0 = H, bx1 = -1, by1 = -1;
    for (int p : pix) {
      bx0 = std::min(bx0, p % W), bx1 = std::max(bx1, p % W);
      by0 = std::min(by0, p / W), by1 = std::max(by1, p / W);
    }
    CoverageMap m;
    m.x0 = std::max(0, bx0 - 2);
    m.y0 = std::max(0, by0 - 2);
    m.w = std::min(W - 1, bx1 + 2) - m.x0 + 1;
    m.h = std::min(H - 1, by1 + 2) - m.y0 + 1;
    m.alpha.assign(static_cast<size_t>(m.w) * m.h, 0.f);
    double A = 0, mx = 0, my = 0;
    for (int j = 0; j < m.h; ++j)
      for (int i = 0; i < m.w; ++i) {
        const int x = m.x0 + i, y = m.y0 + j, p = y * W + x;
        bool mine = label[p] == static_cast<int>(id);
        if (!mine && label[p] == -1)
          for (int dy = -1; dy <= 1 && !mine; ++dy)
            for (int dx = -1; dx <= 1 && !mine; ++dx) {
              const int qx = x + dx, qy = y + dy;
              mine = qx >= 0 && qy >= 0 && qx < W && qy < H && label[qy * W + qx] == static_cast<int>(id);
            }
        if (!mine) continue;
        double dot = 0;
        for (int k = 0; k < 3; ++k) dot += (img.rgb[static_cast<size_t>(p) * 3 + k] - bg[k]) * qv[k];
        const float a = static_cast<float>(std::clamp(dot / qq, 0.0, 1.0));
        m.alpha[static_cast<size_t>(j) * m.w + i] = a;
        m.sum_sq += static_cast<double>(a) * a;
        A += a, mx += a * (x + 0.5), my += a * (y + 0.5);
      }
    if (A < 1.0) continue;
    mx /= A, my /= A;

    // Shape: place every template by area and centroid, refine the two best, keep the best.
    // Each shape at its best blur level; exact renders match at blur 0 with error ~0.
    Fit fits[kNumShapes];
    for (int s = 0; s < kNumShapes; ++s) {
      const float r = static_cast<float>(std::sqrt(A / mom.area[s]));
      const float cx = static_cast<float>(mx - mom.cu[s] * r), cy = static_cast<float>(my - mom.cv[s] * r);
      fits[s] = {s, 0, cx, cy, r, m.error(s, 0, cx, cy, r)};
      for (int b = 1; b < kBlurLevels && fits[s].err > 1e-3f * A; ++b) {
        const float e = m.error(s, b, cx, cy, r);
        if (e < fits[s].err) fits[s].blur = b, fits[s].err = e;
      }
    }
    std::sort(fits, fits + kNumShapes, [](const Fit& a, const Fit& b) { return a.err < b.err; });
    Fit f = refine(m, fits[0]);
    const Fit g = refine(m, fits[1]);
    if (g.err < f.err) f = g;

    Detected d;
    d.shape = f.shape;
    d.color = color;
    d.cx = f.cx / static_cast<float>(W);
    d.cy = f.cy / static_cast<float>(H);
    d.area = static_cast<float>(A / static_cast<double>(npix));
    d.radius = f.r / static_cast<float>(W);
    d.size = d.radius > 0.5f * (kSmallRadius + kLargeRadius) ? 1 : 0;
    d.fit_error = static_cast<float>(std::max(0.f, f.err) / A);
    out.push_back(d);
  }
  std::sort(out.begin(), out.end(), [](const Detected& a, const Detected& b) {
    return a.cy != b.cy ? a.cy < b.cy : a.cx < b.cx;
  });
  return out;
}

}  // namespace mot::data
