// An exact parser of the built-in corpus's caption grammar (data/synth/scene.cpp,
// caption()): which objects a caption mentions (colour, shape, and size when it says
// one), which relations it states between them, the region it gives a lone object and
// the object count it states. Every word must belong to the grammar: a caption with an
// unknown word, a colour without its shape, or a relation without two objects does not
// parse (ok = false). Punctuation is ignored, so "a red circle. a blue square is left
// of it." reads as the generator meant it.
//
// What a parse is checked against (evalgen.cpp): a scene (the caption is true of it
// exactly when every mentioned object exists, every object is mentioned, and every
// stated size, relation, region and count holds), or the objects found in an image.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "mot/data/synth/scene.hpp"

namespace mot {

struct CaptionObject {
  int shape = -1, color = -1;
  int size = -1;  // 0 small, 1 large, -1 not stated
  std::array<int, 2> region = {-1, -1};  // stated region (lone objects), -1 not stated
};

enum class StatedRelation { left_of, right_of, above, below, next_to };

struct CaptionRelation {
  int a = 0, b = 0;  // indices into objects: "a REL b"
  StatedRelation rel = StatedRelation::left_of;
};

struct ParsedCaption {
  bool ok = false;
  bool empty_scene = false;  // "an empty black image."
  std::vector<CaptionObject> objects;  // in caption order
  std::vector<CaptionRelation> relations;
  int count = -1;  // stated object count, -1 if none
};

ParsedCaption parse_caption(const std::string& caption);

// Whether a stated relation holds between two objects (as the generator decides it).
bool relation_holds(StatedRelation r, const data::SceneObject& a, const data::SceneObject& b);

// The caption checked slot by slot against a scene: every scene object mentioned (by
// colour and shape), every mention a scene object, every stated size, relation,
// region and count true. exact: all of it (and the caption parses).
struct CaptionCheck {
  bool parsed = false, exact = false;
  int slots = 0, correct = 0;  // slot accuracy = correct / slots
};
CaptionCheck check_caption(const ParsedCaption& p, const data::Scene& truth);

}  // namespace mot
