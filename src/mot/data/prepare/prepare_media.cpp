#include "mot/data/prepare/prepare_media.hpp"

#include "mot/data/prepare/prepare_image.hpp"
#include "mot/data/prepare/prepare_speech.hpp"

namespace mot::data {

std::vector<std::unique_ptr<MediaKind>> media_kinds(const PrepareOptions& opt) {
  std::vector<std::unique_ptr<MediaKind>> kinds;
  kinds.push_back(std::make_unique<ImageKind>(opt));
  // The modality "speech" as `mot data synth --speech` names it, {"audio": ...} in
  // captions.jsonl; after image, so a text+image+speech vocabulary is laid out as synth's.
  kinds.push_back(std::make_unique<SpeechKind>(opt));
  return kinds;
}

}  // namespace mot::data
