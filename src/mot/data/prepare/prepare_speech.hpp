// Speech for `mot data prepare`: audio files (anything libsndfile reads: WAV, FLAC,
// Ogg/Vorbis, Ogg/Opus, MP3, AIFF, ...; format sniffed by libsndfile, not taken from the
// extension) become 16 kHz mono (audio/audio_io.hpp), log-mel frames at 25 Hz and
// units of a k-means codebook (data/tokenize/unit_codebook.hpp), the tokenizer and
// layouts of `mot data synth --speech`:
//   asr     <s> <bos_speech> units <eos_speech> transcript </s>
//   tts     <s> transcript <bos_speech> units <eos_speech> </s>
//   speech  <s> <bos_speech> units <eos_speech> </s>           (no transcript)
// A file longer than --speech-max-seconds is cut into utterances of at most that
// length (balanced lengths, each cut at the quietest frame within 2 s of its even
// position, so words are rarely split): a document stays well below typical training
// windows instead of being one 10-minute span no window sees whole. A transcript
// cannot be aligned to the pieces, so such a file gives speech documents and its
// transcript a text document.
//
// Memory: one file's samples and frames per thread at a time; the codebook learns on
// at most --speech-sample-frames frames (32 MB at the default 100000).
#pragma once
#include <map>
#include <set>
#include <string>

#include "mot/audio/reconstruction.hpp"
#include "mot/data/tokenize/unit_codebook.hpp"
#include "mot/data/prepare/prepare_media.hpp"

namespace mot::data {

class SpeechKind final : public MediaKind {
 public:
  explicit SpeechKind(const PrepareOptions& opt);
  std::string name() const override { return "speech"; }
  std::string caption_key() const override { return "audio"; }
  std::vector<std::string> extensions() const override {
    return {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a"};
  }
  DocNames doc_names() const override { return {"tts", "asr", "speech"}; }
  std::pair<int, int> markers(const TextTokenizer& tok) const override;
  std::vector<std::pair<size_t, std::string>> train(const std::vector<std::string>& paths, bool quiet) override;
  void load(const std::string& dir, const nlohmann::json& vocab) override;
  void save(const std::string& dir) const override;
  std::vector<std::string> files() const override { return {"speech.safetensors"}; }
  uint32_t vocab_size() const override { return static_cast<uint32_t>(cb_.units); }
  void describe(nlohmann::json& vocab) const override;
  void set_heldout(const std::vector<std::string>& paths) override;
  std::vector<Encoded> encode(const std::vector<std::string>& paths) override;
  void report(nlohmann::json& summary) const override;

 private:
  int units_, iters_;
  size_t sample_frames_, max_frames_;  // codebook sample; frames per utterance
  uint64_t seed_;
  audio::UnitCodebook cb_;
  size_t sampled_files_ = 0, sampled_frames_ = 0;  // what the codebook learned from (0 when loaded)
  std::set<std::string> heldout_;                  // files measured end to end (a few held-out ones)
  std::map<std::string, audio::Reconstruction> measured_;  // by path: reported in path order
  double seconds_ = 0;                             // audio encoded, summed in input order
  uint64_t files_ = 0, utterances_ = 0, cut_files_ = 0;
};

}  // namespace mot::data
