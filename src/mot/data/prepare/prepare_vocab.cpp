#include "mot/data/prepare/prepare_vocab.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"

namespace mot::data {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_small_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void load_tokenizers(const std::string& from, const std::vector<std::unique_ptr<MediaKind>>& kinds, Tokenizers& t) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) fail("--tokenizers ", from, ": no such data directory");
  t.vocab = Vocab::read(from, "not a data directory made by `mot data synth` or `mot data prepare`");
  t.text = TextTokenizer::load(from + "/text.model");
  t.reused["text.model"] = read_small_file(from + "/text.model");
  t.modalities = t.vocab.modalities(from);
  if (t.modalities.empty() || t.modalities[0].name != "text" || t.modalities[0].begin != 0 ||
      t.modalities[0].end != static_cast<uint32_t>(t.text.vocab_size()))
    fail(from, "/vocab.json: the first modality is not text [0, ", t.text.vocab_size(), ") as text.model says");
  t.begin.assign(kinds.size(), -1);
  for (size_t k = 0; k < kinds.size(); ++k) {
    if (!kinds[k]->pending().empty()) continue;
    for (const auto& m : t.modalities) {
      if (m.name != kinds[k]->name()) continue;
      kinds[k]->load(from, t.vocab.fields);
      if (m.end - m.begin != kinds[k]->vocab_size())
        fail(from, "/vocab.json: modality '", m.name, "' has ", m.end - m.begin, " ids but its tokenizer has ",
             kinds[k]->vocab_size());
      t.begin[k] = m.begin;
      for (const auto& f : kinds[k]->files()) t.reused[f] = read_small_file(from + "/" + f);
    }
  }
}

// vocab.json for freshly trained tokenizers, in the layout `mot data synth` writes.
void build_vocab(const std::vector<std::unique_ptr<MediaKind>>& kinds, const std::vector<bool>& in_use, Tokenizers& t) {
  const uint32_t v_text = static_cast<uint32_t>(t.text.vocab_size());
  t.modalities = {{"text", 0, v_text}};
  t.begin.assign(kinds.size(), -1);
  json v = {{"bos_id", t.text.bos_id()}, {"eos_id", t.text.eos_id()}, {"boi_id", t.text.boi_id()},
            {"eoi_id", t.text.eoi_id()}};
  uint32_t next = v_text;
  for (size_t k = 0; k < kinds.size(); ++k) {
    if (!in_use[k]) continue;
    t.begin[k] = next;
    t.modalities.push_back({kinds[k]->name(), next, next + kinds[k]->vocab_size()});
    next += kinds[k]->vocab_size();
    kinds[k]->describe(v);
  }
  if (t.text.bos_speech_id() >= 0 && std::any_of(t.modalities.begin(), t.modalities.end(),
                                                 [](const ModalityRange& m) { return m.name == "speech"; })) {
    v["bos_speech_id"] = t.text.bos_speech_id();
    v["eos_speech_id"] = t.text.eos_speech_id();
  }
  v["vocab_size"] = next;
  json mods = json::array();
  for (const auto& m : t.modalities) mods.push_back({{"name", m.name}, {"begin", m.begin}, {"end", m.end}});
  v["modalities"] = mods;
  t.vocab = Vocab(std::move(v));
}

}  // namespace mot::data
