// Generation quality on the built-in corpus's held-out scenes, scored exactly against
// their ground truth (SPEC section 4, `mot evalgen`):
//
//   captions -> images: each generated image is analysed back into objects
//     (data::analyze_image); the prompt caption is parsed (caption_parse.hpp) into what
//     it states. Prompt objects are matched one-to-one to found objects (the matching
//     that agrees on the most colours and shapes). parse_rate: images in which the
//     analyser finds any object; count_acc: as many objects as the caption names;
//     shape/colour_acc: share of named objects whose match has that shape / colour;
//     size_acc: the same over the sizes the caption states; relation_acc: share of
//     stated relations that hold between the matches; exact: all of these at once.
//     (GenEval's predicates, with an exact analyser instead of a detector.)
//   images -> captions (and speech -> text): the generated caption is parsed and
//     checked slot by slot against the scene (check_caption): exact, slot_acc (correct
//     slots / slots, pooled), parse_rate, and CIDEr-D against the scene's references.
#pragma once
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/data/media/image.hpp"
#include "mot/data/synth/scene.hpp"

namespace mot {

struct HeldOutScene {
  data::Scene scene;
  std::string caption;                  // the caption of its val documents
  std::vector<std::string> references;  // for CIDEr (the caption first)
};

// DIR/val-scenes.jsonl (written by `mot data synth`). mot::Error naming the file when it
// is missing (a corpus made before evalgen existed, or by `mot data prepare`) or malformed.
std::vector<HeldOutScene> read_val_scenes(const std::string& dir);
std::vector<HeldOutScene> parse_val_scenes(std::istream& in, const std::string& path);  // val_scenes.cpp

struct ImageScores {
  int64_t n = 0;
  double parse_rate = 0, count_acc = 0, shape_acc = 0, colour_acc = 0, size_acc = 0, relation_acc = 0, exact = 0;
  nlohmann::json to_json() const;
};
// images[i] was generated for the caption prompts[i].
ImageScores score_images(const std::vector<std::string>& prompts, const std::vector<data::Image>& images);

struct CaptionScores {
  int64_t n = 0;
  double parse_rate = 0, exact = 0, slot_acc = 0, cider = 0;
  nlohmann::json to_json() const;
};
// captions[i] was generated for scenes[i].
CaptionScores score_captions(const std::vector<std::string>& captions, const std::vector<HeldOutScene>& scenes);

}  // namespace mot
