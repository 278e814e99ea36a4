#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/evalgen/scores.hpp"

namespace mot {

using nlohmann::json;

std::vector<HeldOutScene> read_val_scenes(const std::string& dir) {
  const std::string path = dir + "/val-scenes.jsonl";
  std::ifstream in(path);
  if (!in)
    fail(path, ": cannot open (evalgen scores the held-out scenes of a corpus made by `mot data synth`; re-run it ",
         "if the corpus predates this file)");
  return parse_val_scenes(in, path);
}

std::vector<HeldOutScene> parse_val_scenes(std::istream& in, const std::string& path) {
  std::vector<HeldOutScene> out;
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      HeldOutScene h;
      for (const auto& o : j.at("objects")) {
        data::SceneObject s;
        s.shape = data::shape_index(o.at("shape").get<std::string>());
        s.color = data::color_index(o.at("colour").get<std::string>());
        const std::string size = o.at("size").get<std::string>();
        s.size = size == "large" ? 1 : 0;
        s.cx = o.at("cx").get<float>();
        s.cy = o.at("cy").get<float>();
        if (s.shape < 0 || s.color < 0 || (size != "large" && size != "small") || !(s.cx >= 0 && s.cx <= 1) ||
            !(s.cy >= 0 && s.cy <= 1))
          throw std::runtime_error("object");
        h.scene.objects.push_back(s);
      }
      h.caption = j.at("caption").get<std::string>();
      h.references = j.at("references").get<std::vector<std::string>>();
      if (h.references.empty() || h.scene.objects.size() > static_cast<size_t>(data::kMaxSceneObjects))
        throw std::runtime_error("references");
      out.push_back(std::move(h));
    } catch (const std::exception&) {
      fail(path, ":", no, ": not a held-out scene (objects with shape, colour, size, cx, cy; caption; references)");
    }
  }
  if (out.empty()) fail(path, ": no scenes");
  return out;
}

}  // namespace mot
