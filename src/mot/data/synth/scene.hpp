// Procedural scenes for the built-in multimodal corpus: a few coloured shapes on a
// black background, rendered with anti-aliasing, described by varied captions and
// question/answer documents generated from the exact ground truth, and re-derived
// from pixels by analyze_image (to check renders and score generated images).
//
// Geometry: coordinates are fractions of the image side, x to the right, y down.
// Every shape fits in the square [cx-r, cx+r] x [cy-r, cy+r] with r = object_radius(size).
// random_scene keeps these boxes inside the image with a margin and pairwise
// separated by a gap along at least one axis, so objects never touch, there is a
// clean pixel between them at 16 px and above, and one spatial relation is clear.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mot/core/rng.hpp"
#include "mot/data/media/image.hpp"

namespace mot::data {

struct SceneObject {
  int shape = 0;   // index into shape_names()
  int color = 0;   // index into color_names()
  int size = 0;    // 0 small, 1 large
  float cx = 0.5f, cy = 0.5f;  // centre, fractions of the image side
};

struct Scene {
  std::vector<SceneObject> objects;
};

// Radius (half side of the shape's box) as a fraction of the image side.
inline constexpr float kSmallRadius = 0.12f;
inline constexpr float kLargeRadius = 0.21f;
inline constexpr float kSceneMargin = 0.03f;  // box to image border
inline constexpr float kSceneGap = 0.07f;     // box to box, along the separating axis
inline constexpr int kMaxSceneObjects = 6;
inline float object_radius(int size) { return size ? kLargeRadius : kSmallRadius; }

// circle square triangle diamond cross ring star heart
const std::vector<std::string>& shape_names();
// red green blue yellow purple orange white cyan
const std::vector<std::string>& color_names();
const std::array<uint8_t, 3>& color_rgb(int color);  // the palette; background is black
int shape_index(std::string_view name);  // -1 if unknown
int color_index(std::string_view name);  // -1 if unknown

// 1..max_objects objects (max_objects in [1, kMaxSceneObjects], else mot::Error), no two with
// the same (shape, colour), placed as described above.
Scene random_scene(Rng& rng, int max_objects = 3);

// image_size x image_size RGB, 4x4 supersampled coverage per pixel over black.
// Throws mot::Error on an out-of-range size, shape or colour.
Image render_scene(const Scene& s, int image_size = 32);

// One lower-case ASCII sentence (or two) describing the scene: random template, object
// order, optional size words and synonyms, and spatial relations stated only where the
// boxes are separated along the dominant axis. Each object appears as "<colour> <shape>".
std::string caption(const Scene& s, Rng& rng);

// Text-only document: a caption, then "question: ... answer: ...". The question kind is
// drawn among those with an unambiguous answer for this scene (colour of a shape, shape
// of a colour, counts, which is further left/right/higher/lower, size, existence, where).
// Mentions only the scene's shapes and colours.
std::string qa_text(const Scene& s, Rng& rng);

// What captions state about positions (and the caption parser checks, evalgen/):
// a is left of / right of / above / below b when their boxes are separated along the
// dominant axis of b - a (none otherwise); side by side = on one row, horizontally apart
// ("next to", "beside"); an object's region = (horizontal, vertical) third, 0 low,
// 1 centre, 2 high, -1 when not clear-cut ("on the left", "in the top right corner").
enum class Relation { none, left_of, right_of, above, below };
Relation relation_of(const SceneObject& a, const SceneObject& b);
bool side_by_side(const SceneObject& a, const SceneObject& b);
std::array<int, 2> region_of(const SceneObject& o);

struct Detected {
  int shape = -1;
  int color = -1;
  float cx = 0, cy = 0;   // fitted shape centre, fractions of the image width / height
  float area = 0;         // coverage-weighted area, fraction of the image area
  float radius = 0;       // fitted radius, fraction of the image width
  int size = 0;           // radius nearer kLargeRadius (1) or kSmallRadius (0)
  float fit_error = 0;    // sum of squared coverage residuals / area (0 = exact template)
};

// Re-derives objects from pixels: background = median border colour; connected components
// (8-neighbour) of pixels differing from it by more than 48 levels (or 4x the border's median
// deviation on noisy images); components under 3 pixels or without a clearly bright core are
// ignored. Colour = nearest palette colour (up to brightness) of the component's core pixels.
// Shape = the template whose 4x4-supersampled coverage, optionally Gaussian-blurred (for soft
// generated images), placed by the component's area and centroid and refined by a small search
// over centre and radius, best matches the component's coverage map. Sorted by (cy, cx).
std::vector<Detected> analyze_image(const Image& img);

}  // namespace mot::data
