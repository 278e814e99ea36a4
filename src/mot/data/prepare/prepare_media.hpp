// The media kinds `mot data prepare` understands: every non-text modality is one
// MediaKind. Text is the base (SentencePiece, always present); a media kind owns its
// file extensions, its tokenizer (learned from a sample of the input, or loaded from
// another data directory) and its slice of the unified vocabulary, placed after text
// in registration order. The pipeline (prepare.cpp) pairs each media file with its
// captions and writes the corpus layouts with the kind's begin/end markers:
//   to-media    <s> caption <begin> codes <end> </s>   (image: "gen")
//   from-media  <s> <begin> codes <end> caption </s>   (image: "cap")
//   only        <s> <begin> codes <end> </s>           (image: "img")
//
// Registration point: media_kinds() in prepare_media.cpp (image, then speech). A kind
// can return pending() to have its files recognised but skipped with a reason.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mot::data {

class TextTokenizer;
struct PrepareOptions;

struct Encoded {
  std::vector<uint32_t> codes;  // the file's tokens, 0-based within the kind's vocabulary range
  // Empty: the codes are one span. Else the codes are cut into spans of these lengths
  // (a long recording's utterances), each its own only-document; captions cannot be
  // aligned to the pieces and become text documents.
  std::vector<uint32_t> pieces;
  std::string error;            // non-empty: the file is skipped with this reason
};

class MediaKind {
 public:
  struct DocNames {
    std::string to_media, from_media, only;  // document kinds in summary.json and val shard names
  };
  virtual ~MediaKind() = default;

  virtual std::string name() const = 0;                     // modality name in vocab.json ("image")
  virtual std::string caption_key() const = 0;              // the path key in captions.jsonl ("image")
  virtual std::vector<std::string> extensions() const = 0;  // lower case, with the dot
  // Non-empty: this kind is not available yet; its files are skipped with this reason
  // and none of the other members is called.
  virtual std::string pending() const { return {}; }
  virtual DocNames doc_names() const = 0;
  // Ids in the text vocabulary that open and close a span of this kind's codes.
  virtual std::pair<int, int> markers(const TextTokenizer& tok) const = 0;

  // Learns the tokenizer from files in the order given (a seeded sample order), reading
  // as many as it needs. Returns (position in paths, reason) for files it could not use;
  // throws mot::Error when it cannot learn at all (e.g. too few usable files).
  virtual std::vector<std::pair<size_t, std::string>> train(const std::vector<std::string>& paths, bool quiet) = 0;
  // Or takes the tokenizer of another data directory (its vocab.json given parsed).
  virtual void load(const std::string& dir, const nlohmann::json& vocab) = 0;
  virtual void save(const std::string& dir) const = 0;  // atomic writes
  virtual std::vector<std::string> files() const = 0;   // what save() writes, by name
  virtual uint32_t vocab_size() const = 0;              // codes in its range
  virtual void describe(nlohmann::json& vocab) const = 0;  // its keys in vocab.json (geometry)

  // The held-out (validation) files of this kind, in path order, before encode():
  // a kind may measure its reconstruction quality on a few of them.
  virtual void set_heldout(const std::vector<std::string>& /*paths*/) {}
  // Encodes a batch of files (it may work in parallel inside); one result per path.
  virtual std::vector<Encoded> encode(const std::vector<std::string>& paths) = 0;
  // Adds what it measured while encoding (e.g. reconstruction quality) to summary.json.
  virtual void report(nlohmann::json& summary) const = 0;
};

// The registered kinds, in vocabulary order after text.
std::vector<std::unique_ptr<MediaKind>> media_kinds(const PrepareOptions& opt);

}  // namespace mot::data
