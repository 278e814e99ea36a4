#include "mot/evalgen/caption_parse.hpp"

#include <algorithm>
#include <optional>

#include "mot/evalgen/cider.hpp"

namespace mot {

namespace {

using data::SceneObject;

enum class Ev { filler, mention, rel, region, count, it, empty };

struct Event {
  Ev kind = Ev::filler;
  CaptionObject obj;                        // mention
  StatedRelation rel = StatedRelation::left_of;  // rel
  std::array<int, 2> region = {-1, -1};     // region
  int count = -1;                           // count
};

struct Phrase {
  std::vector<std::string> words;
  Event ev;
};

Event rel_ev(StatedRelation r) {
  Event e;
  e.kind = Ev::rel;
  e.rel = r;
  return e;
}
Event region_ev(int h, int v) {
  Event e;
  e.kind = Ev::region;
  e.region = {h, v};
  return e;
}
Event count_ev(int n) {
  Event e;
  e.kind = Ev::count;
  e.count = n;
  return e;
}
Event kind_ev(Ev k) {
  Event e;
  e.kind = k;
  return e;
}

// Every fixed phrase of the grammar; matched longest first.
const std::vector<Phrase>& phrases() {
  static const std::vector<Phrase> table = [] {
    std::vector<Phrase> t;
    auto add = [&](const std::string& text, Event e) { t.push_back({caption_words(text), e}); };
    using R = StatedRelation;
    for (const char* p : {"to the left of", "left of", "on the left of"}) add(p, rel_ev(R::left_of));
    for (const char* p : {"to the right of", "right of", "on the right of"}) add(p, rel_ev(R::right_of));
    for (const char* p : {"above", "over"}) add(p, rel_ev(R::above));
    for (const char* p : {"below", "under", "beneath"}) add(p, rel_ev(R::below));
    for (const char* p : {"next to", "beside"}) add(p, rel_ev(R::next_to));
    add("in the center", region_ev(1, 1));
    add("in the middle", region_ev(1, 1));
    add("on the left", region_ev(0, 1));
    add("on the right", region_ev(2, 1));
    add("at the top", region_ev(1, 0));
    add("at the bottom", region_ev(1, 2));
    for (int v : {0, 2})
      for (int h : {0, 2}) {
        const std::string corner = std::string(v == 0 ? "top " : "bottom ") + (h == 0 ? "left" : "right");
        add("in the " + corner, region_ev(h, v));
        add("in the " + corner + " corner", region_ev(h, v));
      }
    static const char* const kNumbers[] = {"zero", "one", "two", "three", "four", "five",
                                           "six",  "seven", "eight", "nine", "ten"};
    for (int n = 0; n <= 10; ++n) {
      add(std::string(kNumbers[n]) + " shapes", count_ev(n));
      add(std::string(kNumbers[n]) + " objects", count_ev(n));
    }
    add("single", count_ev(1));
    add("an empty black image", kind_ev(Ev::empty));
    add("nothing but a black background", kind_ev(Ev::empty));
    add("it", kind_ev(Ev::it));
    for (const char* p : {"there is also", "there is", "there are", "an image of", "an image with",
                          "a picture showing", "on a black background", "and", "is", "the", "a", "an"})
      add(p, kind_ev(Ev::filler));
    return t;
  }();
  return table;
}

int size_word(const std::string& w) {
  if (w == "small" || w == "little") return 0;
  if (w == "large" || w == "big") return 1;
  return -1;
}

// The events of a caption, or nothing when a word is outside the grammar.
std::optional<std::vector<Event>> lex(const std::vector<std::string>& w) {
  std::vector<Event> out;
  size_t i = 0;
  while (i < w.size()) {
    // A mention: [size] colour shape.
    {
      size_t j = i;
      const int sz = size_word(w[j]);
      if (sz >= 0) ++j;
      if (j < w.size()) {
        const int col = data::color_index(w[j]);
        if (col >= 0) {
          if (j + 1 >= w.size() || data::shape_index(w[j + 1]) < 0) return std::nullopt;  // a colour without its shape
          Event e;
          e.kind = Ev::mention;
          e.obj.color = col;
          e.obj.shape = data::shape_index(w[j + 1]);
          e.obj.size = sz;
          out.push_back(e);
          i = j + 2;
          continue;
        }
      }
      if (sz >= 0) return std::nullopt;  // a size word without an object
    }
    const Phrase* best = nullptr;
    for (const Phrase& p : phrases()) {
      if (p.words.size() > w.size() - i || (best && p.words.size() <= best->words.size())) continue;
      bool match = true;
      for (size_t k = 0; k < p.words.size() && match; ++k) match = w[i + k] == p.words[k];
      if (match) best = &p;
    }
    if (!best) return std::nullopt;
    out.push_back(best->ev);
    i += best->words.size();
  }
  return out;
}

}  // namespace

ParsedCaption parse_caption(const std::string& caption) {
  ParsedCaption p;
  const auto events = lex(caption_words(caption));
  if (!events) return p;
  std::vector<int> mention_at(events->size(), -1);  // event -> object index
  for (size_t k = 0; k < events->size(); ++k)
    if ((*events)[k].kind == Ev::mention) {
      mention_at[k] = static_cast<int>(p.objects.size());
      p.objects.push_back((*events)[k].obj);
    }
  int last = -1;  // the last object mentioned before the event
  for (size_t k = 0; k < events->size(); ++k) {
    const Event& e = (*events)[k];
    switch (e.kind) {
      case Ev::mention: last = mention_at[k]; break;
      case Ev::rel: {
        if (last < 0) return ParsedCaption{};
        size_t n = k + 1;
        while (n < events->size() && (*events)[n].kind == Ev::filler) ++n;
        if (n == events->size()) return ParsedCaption{};
        int other = -1;
        if ((*events)[n].kind == Ev::mention) other = mention_at[n];
        else if ((*events)[n].kind == Ev::it) other = last - 1;  // "b is REL it": it = the object before b
        if (other < 0 || other == last) return ParsedCaption{};
        p.relations.push_back({last, other, e.rel});
        break;
      }
      case Ev::region:
        if (last < 0) return ParsedCaption{};
        p.objects[last].region = e.region;
        break;
      case Ev::count:
        if (p.count >= 0) return ParsedCaption{};
        p.count = e.count;
        break;
      case Ev::it: {
        // Only as a relation's object (consumed above, after fillers).
        size_t b = k;
        while (b > 0 && (*events)[b - 1].kind == Ev::filler) --b;
        if (b == 0 || (*events)[b - 1].kind != Ev::rel) return ParsedCaption{};
        break;
      }
      case Ev::empty: p.empty_scene = true; break;
      case Ev::filler: break;
    }
  }
  if (p.empty_scene && !p.objects.empty()) return ParsedCaption{};
  if (!p.empty_scene && p.objects.empty()) return ParsedCaption{};
  p.ok = true;
  return p;
}

bool relation_holds(StatedRelation r, const SceneObject& a, const SceneObject& b) {
  using data::Relation;
  switch (r) {
    case StatedRelation::left_of: return data::relation_of(a, b) == Relation::left_of;
    case StatedRelation::right_of: return data::relation_of(a, b) == Relation::right_of;
    case StatedRelation::above: return data::relation_of(a, b) == Relation::above;
    case StatedRelation::below: return data::relation_of(a, b) == Relation::below;
    case StatedRelation::next_to: return data::side_by_side(a, b);
  }
  return false;
}

CaptionCheck check_caption(const ParsedCaption& p, const data::Scene& truth) {
  CaptionCheck c;
  const auto& T = truth.objects;
  if (!p.ok) {
    c.slots = std::max<int>(1, static_cast<int>(T.size()));
    return c;
  }
  c.parsed = true;
  auto slot = [&](bool ok) {
    ++c.slots;
    c.correct += ok;
  };
  // Each mention's scene object (by colour and shape; the scene's pairs are unique).
  std::vector<int> of(p.objects.size(), -1);
  for (size_t m = 0; m < p.objects.size(); ++m)
    for (size_t t = 0; t < T.size(); ++t)
      if (T[t].shape == p.objects[m].shape && T[t].color == p.objects[m].color) of[m] = static_cast<int>(t);
  for (size_t t = 0; t < T.size(); ++t) {
    bool mentioned = false;
    for (int o : of) mentioned |= o == static_cast<int>(t);
    slot(mentioned);
  }
  for (size_t m = 0; m < p.objects.size(); ++m) {
    if (of[m] < 0) {
      slot(false);  // an object the scene does not have
      continue;
    }
    const SceneObject& o = T[of[m]];
    if (p.objects[m].size >= 0) slot(p.objects[m].size == o.size);
    if (p.objects[m].region[0] >= 0) slot(p.objects[m].region == data::region_of(o));
  }
  for (const auto& r : p.relations)
    slot(of[r.a] >= 0 && of[r.b] >= 0 && relation_holds(r.rel, T[of[r.a]], T[of[r.b]]));
  if (p.count >= 0) slot(p.count == static_cast<int>(T.size()));
  if (p.empty_scene) slot(T.empty());
  c.exact = c.correct == c.slots;
  return c;
}

}  // namespace mot
