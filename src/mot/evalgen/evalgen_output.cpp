#include "mot/evalgen/evalgen_output.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::evalgen_detail {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
// A grid: for each of the first scenes, the corpus's image above the generated one.
void write_grid(const std::string& path, const std::vector<data::Image>& truth, const std::vector<data::Image>& gen) {
  const size_t n = std::min<size_t>(8, gen.size());
  if (n == 0) return;
  data::write_png(path, data::image_grid({{truth.begin(), truth.begin() + n}, {gen.begin(), gen.begin() + n}}, 4, 4, 64));
}
}  // namespace

HeldOut open_held_out(const std::string& dir, int64_t n) {
  std::vector<HeldOutScene> scenes = read_val_scenes(dir);
  if (n > 0 && static_cast<size_t>(n) < scenes.size()) scenes.resize(static_cast<size_t>(n));
  HeldOut h{std::move(scenes), data::Shard::open(dir + "/val-gen.shard"), data::Shard::open(dir + "/val-cap.shard")};
  if (h.gen.n_docs() < h.scenes.size() || h.cap.n_docs() < h.scenes.size())
    fail(dir, ": val-gen/val-cap shards hold fewer documents than val-scenes.jsonl has scenes");
  return h;
}

void add_flat(json& j, const std::string& prefix, const json& part) {
  j[prefix] = part;
  for (auto it = part.begin(); it != part.end(); ++it) j[prefix + "." + it.key()] = it.value();
}

void write_outputs(const std::string& out, const std::vector<HeldOutScene>& scenes,
                   const std::vector<data::Image>& truth, const std::vector<data::Image>& images,
                   const std::vector<std::string>& captions, const std::vector<std::string>* transcripts,
                   const json& j) {
  std::error_code ec;
  fs::create_directories(fs::path(out) / "images", ec);
  if (ec) fail(out, ": cannot create the output directory: ", ec.message());
  std::string lines;
  for (size_t i = 0; i < images.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%03zu.png", i);
    data::write_png((fs::path(out) / "images" / name).string(), images[i]);
    json row = {{"scene", i}, {"caption_prompt", scenes[i].caption}, {"image", std::string("images/") + name},
                {"caption", captions[i]}, {"references", scenes[i].references}};
    if (transcripts) row["transcript"] = (*transcripts)[i];
    lines += row.dump() + "\n";
  }
  io::write_file_atomic((fs::path(out) / "generations.jsonl").string(), lines);
  write_grid((fs::path(out) / "grid.png").string(), truth, images);
  io::write_file_atomic((fs::path(out) / "evalgen.json").string(), j.dump(2) + "\n");
}

}  // namespace mot::evalgen_detail
