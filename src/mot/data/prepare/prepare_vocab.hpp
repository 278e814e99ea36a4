// The tokenizers of `mot data prepare` and the vocab.json that lays them out: text
// (SentencePiece, always ids [0, V_text)) then one range per media kind in use, in
// registration order, as `mot data synth` writes it. Either freshly trained (the
// kinds train themselves; build_vocab lays out the ranges) or reused from another data
// directory (--tokenizers FROM), whose vocab.json and tokenizer files are then copied
// byte for byte so the two data directories are interchangeable.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mot/data/prepare/prepare_media.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/data/format/vocab.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"

namespace mot::data {

struct Tokenizers {
  TextTokenizer text;
  Vocab vocab;                                // vocab.json as written
  std::vector<ModalityRange> modalities;      // shard modality table
  std::vector<int64_t> begin;                 // per media kind: first id of its range, -1 if absent
  std::map<std::string, std::string> reused;  // --tokenizers: file name -> bytes, copied verbatim
};

// Loads FROM's text tokenizer and every registered kind its vocab.json names; keeps
// modalities this build has no kind for (their ranges stay in the shard table).
// mot::Error on a missing or inconsistent file.
void load_tokenizers(const std::string& from, const std::vector<std::unique_ptr<MediaKind>>& kinds, Tokenizers& t);

// After t.text and the kinds in use were trained: ranges, ids and geometry.
void build_vocab(const std::vector<std::unique_ptr<MediaKind>>& kinds, const std::vector<bool>& in_use, Tokenizers& t);

std::string read_small_file(const std::string& path);  // a whole (small) file; mot::Error if unreadable

}  // namespace mot::data
