// The input walk of `mot data prepare`: every file under --in, sorted by path, becomes
// a text item, a media item (with references to its captions), caption metadata
// (a same-named .txt, a captions.jsonl) or a skipped file with its reason. Nothing is
// decoded here; captions are located, checked and read again when needed, so memory
// holds paths and offsets, not content.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mot/data/prepare/prepare_media.hpp"
#include "mot/data/prepare/prepare_text.hpp"

namespace mot::data {

// Where one caption is: the whole of a .txt companion (line < 0), or caption number
// `sub` of the captions.jsonl line at byte `offset` (`length` bytes, line number `line`).
struct CaptionRef {
  uint32_t file = 0;  // index into Scan::caption_files
  int64_t line = -1;
  uint64_t offset = 0, length = 0;
  uint32_t sub = 0;
};

struct Item {
  std::string rel;     // path relative to --in, '/'-separated: names the file everywhere
  uint64_t bytes = 0;
  int kind = -1;       // -1: a text document; else index into the media kinds
  uint64_t hash = 0;   // seeded hash of rel: the validation split (held_out) and the sample order
  bool val = false;
  std::vector<CaptionRef> captions;
  std::vector<TextRange> ranges;  // text documents in the file (set by pass 1)
  std::string bad;                // non-empty: found unusable later, skipped with this reason
};

struct Skip {
  std::string rel, reason;
};

struct Scan {
  std::string root;                        // --in
  std::vector<Item> items;                 // sorted by rel
  std::vector<std::string> caption_files;  // rel paths of .txt companions and captions.jsonl files used
  std::vector<Skip> skipped;               // files skipped during the walk
  std::vector<std::string> warnings;       // captions.jsonl lines that could not be used
  uint64_t files = 0;                      // entries seen (files, and links/folders skipped), hidden ones not
  uint64_t hidden = 0;                     // names starting with '.' (ignored)
  uint64_t captions = 0;                   // caption references attached to media items
  std::string path(const std::string& rel) const { return root + "/" + rel; }
};

// Walks `in` (skipping `exclude`, the output directory, if it lies inside).
Scan scan_input(const std::string& in, const std::string& exclude,
                const std::vector<std::unique_ptr<MediaKind>>& kinds, uint64_t seed);

// Whether a file whose seeded path hash is `hash` is held out: hash / 2^64 < fraction.
inline bool held_out(uint64_t hash, double fraction) {
  return static_cast<double>(hash >> 11) * 0x1.0p-53 < fraction;
}

// Marks items for validation: exactly those held_out(hash, fraction). The hash is
// splitmix64(FNV-1a(path relative to --in) ^ seed * golden ratio), so a file's split
// depends on its own path and the seed only, never on other files (adding files moves
// none between splits). A small input may hold out nothing; fraction 0 holds out nothing.
void assign_validation(Scan& scan, double fraction);

// The text of a caption (re-read from its file); mot::Error if it changed since the walk.
std::string read_caption(const Scan& scan, const CaptionRef& ref);

}  // namespace mot::data
