#include "mot/data/prepare_media.hpp"

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/data/prepare_image.hpp"

namespace mot::data {
namespace {

// A kind whose tokenizer does not exist yet: prepare recognises its files (so they are
// reported as such, and a same-named .txt is not mistaken for a text document) and
// skips them. Only name(), caption_key(), extensions() and pending() are ever called.
class PendingKind final : public MediaKind {
 public:
  PendingKind(std::string name, std::string key, std::vector<std::string> exts, std::string reason)
      : name_(std::move(name)), key_(std::move(key)), exts_(std::move(exts)), reason_(std::move(reason)) {}
  std::string name() const override { return name_; }
  std::string caption_key() const override { return key_; }
  std::vector<std::string> extensions() const override { return exts_; }
  std::string pending() const override { return reason_; }
  DocNames doc_names() const override { unused(); }
  std::pair<int, int> markers(const TextTokenizer&) const override { unused(); }
  std::vector<std::pair<size_t, std::string>> train(const std::vector<std::string>&, bool) override { unused(); }
  void load(const std::string&, const nlohmann::json&) override { unused(); }
  void save(const std::string&) const override { unused(); }
  std::vector<std::string> files() const override { unused(); }
  uint32_t vocab_size() const override { unused(); }
  void describe(nlohmann::json&) const override { unused(); }
  std::vector<Encoded> encode(const std::vector<std::string>&) override { unused(); }
  void report(nlohmann::json&) const override { unused(); }

 private:
  [[noreturn]] void unused() const { throw std::logic_error("prepare: the pending kind '" + name_ + "' was used"); }
  std::string name_, key_;
  std::vector<std::string> exts_;
  std::string reason_;
};

}  // namespace

std::vector<std::unique_ptr<MediaKind>> media_kinds(const PrepareOptions& opt) {
  std::vector<std::unique_ptr<MediaKind>> kinds;
  kinds.push_back(std::make_unique<ImageKind>(opt));
  // The speech tokenizer (src/mot/audio/) replaces this entry with its MediaKind: the
  // modality "speech" as `mot data synth --speech` names it, {"audio": ...} in captions.jsonl.
  kinds.push_back(std::make_unique<PendingKind>("speech", "audio",
                                                std::vector<std::string>{".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a"},
                                                "audio not supported yet"));
  return kinds;
}

}  // namespace mot::data
