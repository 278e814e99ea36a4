#include "mot/data/tokenize/text_tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::data {

namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& v_;
  size_t i_ = 0;
};

}  // namespace

TextTokenizer::TextTokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
TextTokenizer::~TextTokenizer() = default;
TextTokenizer::TextTokenizer(TextTokenizer&&) noexcept = default;
TextTokenizer& TextTokenizer::operator=(TextTokenizer&&) noexcept = default;

TextTokenizer TextTokenizer::train(const std::vector<std::string>& sentences, int vocab_size, bool speech_markers) {
  if (sentences.empty()) fail("text tokenizer: no text to train on");
  if (vocab_size < 16) fail("text tokenizer: vocabulary size ", vocab_size, " is too small (need >= 16)");
  TextTokenizer t;
  // Every printable ASCII character gets a piece, so any ASCII text round-trips
  // exactly even if the corpus never used that character.
  std::vector<std::string> all = sentences;
  std::string ascii;
  for (char c = 33; c < 127; ++c) ascii += c;
  all.push_back(ascii);
  VectorIterator it(all);
  const std::string args = cat("--model_type=bpe --max_sentencepiece_length=16 --vocab_size=", vocab_size,
                               " --character_coverage=1.0 --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
                               " --user_defined_symbols=<boi>,<eoi>", speech_markers ? ",<bos_speech>,<eos_speech>" : "",
                               " --num_threads=2 --minloglevel=2"
                               " --hard_vocab_limit=false --input_sentence_size=2000000"
                               " --shuffle_input_sentence=false --split_digits=true");
  // SentencePiece logs its command line to stderr whatever --minloglevel says; keep
  // our progress output clean (failures still come back through the status).
  std::fflush(stderr);
  const int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
  if (devnull >= 0) dup2(devnull, 2);
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &t.proto_);
  std::fflush(stderr);
  if (saved >= 0) { dup2(saved, 2); close(saved); }
  if (devnull >= 0) close(devnull);
  if (!st.ok()) fail("text tokenizer: SentencePiece training failed: ", st.ToString());
  const auto ls = t.sp_->LoadFromSerializedProto(t.proto_);
  if (!ls.ok()) fail("text tokenizer: cannot load the trained model: ", ls.ToString());
  return t;
}

TextTokenizer TextTokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open text tokenizer model");
  std::stringstream ss;
  ss << f.rdbuf();
  TextTokenizer t;
  t.proto_ = ss.str();
  const auto st = t.sp_->LoadFromSerializedProto(t.proto_);
  if (!st.ok()) fail(path, ": not a valid SentencePiece model (", st.ToString(), ")");
  if (t.sp_->PieceToId("<boi>") == t.sp_->unk_id() || t.sp_->PieceToId("<eoi>") == t.sp_->unk_id())
    fail(path, ": SentencePiece model lacks the <boi>/<eoi> symbols");
  return t;
}

void TextTokenizer::save(const std::string& path) const { io::write_file_atomic(path, proto_); }

std::vector<int> TextTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto st = sp_->Encode(text, &ids);
  if (!st.ok()) fail("text tokenizer: cannot encode: ", st.ToString());
  return ids;
}

std::string TextTokenizer::decode(const std::vector<int>& ids) const {
  std::vector<int> plain;
  for (int id : ids)
    if (id > eos_id() && id != boi_id() && id != eoi_id() && id != bos_speech_id() && id != eos_speech_id() &&
        id < vocab_size())
      plain.push_back(id);
  std::string out;
  const auto st = sp_->Decode(plain, &out);
  if (!st.ok()) fail("text tokenizer: cannot decode: ", st.ToString());
  return out;
}

int TextTokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int TextTokenizer::boi_id() const { return sp_->PieceToId("<boi>"); }
int TextTokenizer::eoi_id() const { return sp_->PieceToId("<eoi>"); }
int TextTokenizer::bos_speech_id() const {
  const int id = sp_->PieceToId("<bos_speech>");
  return id == sp_->unk_id() ? -1 : id;
}
int TextTokenizer::eos_speech_id() const {
  const int id = sp_->PieceToId("<eos_speech>");
  return id == sp_->unk_id() ? -1 : id;
}
std::string TextTokenizer::piece(int id) const { return sp_->IdToPiece(id); }

}  // namespace mot::data
