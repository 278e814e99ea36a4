#include "mot/evalgen/scores.hpp"

#include <algorithm>

#include "mot/core/error.hpp"
#include "mot/evalgen/caption_parse.hpp"
#include "mot/evalgen/cider.hpp"

namespace mot {

using nlohmann::json;

namespace {

data::SceneObject as_object(const data::Detected& d) {
  data::SceneObject o;
  o.shape = d.shape;
  o.color = d.color;
  o.size = d.size;
  o.cx = d.cx;
  o.cy = d.cy;
  return o;
}

// The one-to-one matching of named objects to found ones (-1: none) with the most
// colour + shape agreements; ties to the first found in search order.
std::vector<int> best_matching(const std::vector<CaptionObject>& want, const std::vector<data::Detected>& got) {
  const size_t n = want.size(), m = std::min<size_t>(got.size(), 10);
  std::vector<int> cur(n, -1), best(n, -1);
  int best_score = -1;
  std::vector<bool> used(m, false);
  auto score = [&](size_t i, int j) {
    return j < 0 ? 0 : (got[j].shape == want[i].shape) + (got[j].color == want[i].color);
  };
  auto search = [&](auto&& self, size_t i, int acc) -> void {
    if (i == n) {
      if (acc > best_score) best_score = acc, best = cur;
      return;
    }
    for (size_t j = 0; j < m; ++j) {
      if (used[j]) continue;
      used[j] = true;
      cur[i] = static_cast<int>(j);
      self(self, i + 1, acc + score(i, static_cast<int>(j)));
      used[j] = false;
    }
    cur[i] = -1;
    self(self, i + 1, acc);
  };
  search(search, 0, 0);
  return best;
}

double ratio(int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }

}  // namespace

ImageScores score_images(const std::vector<std::string>& prompts, const std::vector<data::Image>& images) {
  if (prompts.size() != images.size()) fail("evalgen: ", prompts.size(), " captions for ", images.size(), " images");
  ImageScores s;
  s.n = static_cast<int64_t>(images.size());
  int64_t parsed = 0, count_ok = 0, objects = 0, shape_ok = 0, colour_ok = 0, sizes = 0, size_ok = 0, rels = 0,
          rel_ok = 0, exact = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const ParsedCaption p = parse_caption(prompts[i]);
    if (!p.ok) fail("evalgen: the prompt '", prompts[i], "' is not a caption of the corpus grammar");
    const std::vector<data::Detected> found = data::analyze_image(images[i]);
    parsed += !found.empty();
    const bool count = found.size() == p.objects.size();
    count_ok += count;
    const std::vector<int> match = best_matching(p.objects, found);
    bool all = count;
    for (size_t k = 0; k < p.objects.size(); ++k) {
      const int j = match[k];
      const bool sh = j >= 0 && found[j].shape == p.objects[k].shape;
      const bool co = j >= 0 && found[j].color == p.objects[k].color;
      ++objects;
      shape_ok += sh;
      colour_ok += co;
      all = all && sh && co;
      if (p.objects[k].size >= 0) {
        const bool sz = j >= 0 && found[j].size == p.objects[k].size;
        ++sizes;
        size_ok += sz;
        all = all && sz;
      }
    }
    for (const auto& r : p.relations) {
      const int a = match[r.a], b = match[r.b];
      const bool ok = a >= 0 && b >= 0 && relation_holds(r.rel, as_object(found[a]), as_object(found[b]));
      ++rels;
      rel_ok += ok;
      all = all && ok;
    }
    exact += all;
  }
  s.parse_rate = ratio(parsed, s.n);
  s.count_acc = ratio(count_ok, s.n);
  s.shape_acc = ratio(shape_ok, objects);
  s.colour_acc = ratio(colour_ok, objects);
  s.size_acc = ratio(size_ok, sizes);
  s.relation_acc = ratio(rel_ok, rels);
  s.exact = ratio(exact, s.n);
  return s;
}

CaptionScores score_captions(const std::vector<std::string>& captions, const std::vector<HeldOutScene>& scenes) {
  if (captions.size() != scenes.size()) fail("evalgen: ", captions.size(), " captions for ", scenes.size(), " scenes");
  CaptionScores s;
  s.n = static_cast<int64_t>(captions.size());
  int64_t parsed = 0, exact = 0, slots = 0, correct = 0;
  std::vector<std::vector<std::string>> refs;
  for (size_t i = 0; i < captions.size(); ++i) {
    const CaptionCheck c = check_caption(parse_caption(captions[i]), scenes[i].scene);
    parsed += c.parsed;
    exact += c.exact;
    slots += c.slots;
    correct += c.correct;
    refs.push_back(scenes[i].references);
  }
  s.parse_rate = ratio(parsed, s.n);
  s.exact = ratio(exact, s.n);
  s.slot_acc = ratio(correct, slots);
  s.cider = captions.empty() ? 0.0 : cider_d(captions, refs).corpus;
  return s;
}

json ImageScores::to_json() const {
  return {{"n", n},           {"parse_rate", parse_rate}, {"count_acc", count_acc},       {"shape_acc", shape_acc},
          {"colour_acc", colour_acc}, {"size_acc", size_acc}, {"relation_acc", relation_acc}, {"exact", exact}};
}

json CaptionScores::to_json() const {
  return {{"n", n}, {"parse_rate", parse_rate}, {"exact", exact}, {"slot_acc", slot_acc}, {"cider", cider}};
}

}  // namespace mot
