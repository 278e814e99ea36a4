// Text tokenizer: SentencePiece BPE (Debian libsentencepiece-dev), trained on the
// corpus. Ids 0..3 are <unk>, <s> (BOS), </s> (EOS), and <boi>/<eoi> (begin/end of
// image) follow as user-defined symbols, so every special token lies in the text
// modality's range [0, vocab_size). A tokenizer trained with speech_markers also has
// <bos_speech>/<eos_speech> (begin/end of a speech unit span) right after <eoi>.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace mot::data {

class TextTokenizer {
 public:
  TextTokenizer();
  ~TextTokenizer();
  TextTokenizer(TextTokenizer&&) noexcept;
  TextTokenizer& operator=(TextTokenizer&&) noexcept;

  // Trains BPE with `vocab_size` pieces on the sentences (plus one piece for every
  // printable ASCII character, so ASCII text always round-trips).
  static TextTokenizer train(const std::vector<std::string>& sentences, int vocab_size, bool speech_markers = false);
  static TextTokenizer load(const std::string& path);  // a .model file
  void save(const std::string& path) const;           // atomic

  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;  // skips special ids
  int vocab_size() const;
  int unk_id() const { return 0; }
  int bos_id() const { return 1; }
  int eos_id() const { return 2; }
  int boi_id() const;  // <boi>
  int eoi_id() const;  // <eoi>
  int bos_speech_id() const;  // <bos_speech>, or -1 if the model has no speech markers
  int eos_speech_id() const;  // <eos_speech>, or -1
  std::string piece(int id) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string proto_;
};

}  // namespace mot::data
