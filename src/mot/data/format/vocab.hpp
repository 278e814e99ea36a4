// data/format/: what a data directory holds on disk: token shards (shard.hpp), the
// readers that batch them or JSONL rows (dataset.hpp), and vocab.json (here).
//
// vocab.json lays out a data directory's unified vocabulary (written by `mot data
// synth` and `mot data prepare`): vocab_size, the modality ranges [{name, begin, end}]
// (text first, then image, then speech), the text tokenizer's marker ids
// (bos/eos/boi/eoi, bos_speech/eos_speech) and per media kind its geometry
// (image_size, patch, tokens_per_image; speech_units, ...). Vocab is the only code
// that reads or writes the file (model/config.cpp reads it through here for a config
// whose [data] path supplies the vocabulary); the tokenizer kinds add and read their
// own keys on `fields`.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mot/data/format/shard.hpp"

namespace mot::data {

class Vocab {
 public:
  nlohmann::json fields = nlohmann::json::object();

  Vocab() = default;
  explicit Vocab(nlohmann::json f) : fields(std::move(f)) {}

  static std::string path(const std::string& dir);  // DIR/vocab.json
  static bool exists(const std::string& dir);
  // DIR's vocab.json. mot::Error "DIR: no vocab.json (not_a)" when it cannot be opened,
  // "DIR/vocab.json: not valid JSON" when it does not parse.
  static Vocab read(const std::string& dir, const std::string& not_a);

  // The file's bytes: a read vocabulary's exactly as read (so copying one keeps it byte
  // for byte; do not edit `fields` of a read one), a built one's fields.dump(2) + "\n".
  std::string bytes() const;
  void write(const std::string& dir) const;  // DIR/vocab.json, atomically

  // "modalities" as shard ranges (a continuous modality, which has no id range, is left
  // out). mot::Error naming DIR unless a list of {name, begin, end}.
  std::vector<ModalityRange> modalities(const std::string& dir) const;
  // The begin of modality `name`, if listed (malformed entries are skipped).
  std::optional<uint32_t> begin_of(const std::string& name) const;

 private:
  std::string read_bytes_;  // as read; empty for a built vocabulary
};

}  // namespace mot::data
