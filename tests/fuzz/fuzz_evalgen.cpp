// libFuzzer target: what evalgen reads from outside: val-scenes.jsonl (a corpus's
// held-out ground truth) and generated captions (model output, any bytes) through the
// caption parser and its check against a scene.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "mot/core/error.hpp"
#include "mot/evalgen/caption_parse.hpp"
#include "mot/evalgen/scores.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mot::data::Scene scene;
  try {
    std::istringstream in(text);
    const auto scenes = mot::parse_val_scenes(in, "fuzz.jsonl");
    scene = scenes.front().scene;
  } catch (const mot::Error&) {
    mot::data::SceneObject o;
    o.shape = 1, o.color = 2, o.size = 1, o.cx = 0.3f, o.cy = 0.6f;
    scene.objects = {o};
  }
  const mot::ParsedCaption p = mot::parse_caption(text);
  const mot::CaptionCheck c = mot::check_caption(p, scene);
  if (c.correct > c.slots || c.slots < 1 || (c.exact && !p.ok)) __builtin_trap();
  for (const auto& r : p.relations)
    if (r.a < 0 || r.b < 0 || r.a >= static_cast<int>(p.objects.size()) || r.b >= static_cast<int>(p.objects.size()))
      __builtin_trap();
  return 0;
}
