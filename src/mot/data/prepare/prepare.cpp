#include "mot/data/prepare/prepare.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/data/format/data_dir.hpp"
#include "mot/data/prepare/prepare_media.hpp"
#include "mot/data/prepare/prepare_progress.hpp"
#include "mot/data/prepare/prepare_report.hpp"
#include "mot/data/prepare/prepare_scan.hpp"
#include "mot/data/prepare/prepare_shards.hpp"
#include "mot/data/prepare/prepare_text.hpp"
#include "mot/data/prepare/prepare_vocab.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr size_t kMaxSentence = 2048;              // bytes per BPE sentence (SentencePiece drops longer)
constexpr size_t kBatchUnits = 256;                // pass 2 works on this many documents' sources
constexpr uint64_t kBatchBytes = uint64_t{16} << 20;  // ... or this many input bytes at a time

struct DocChoice {
  bool to_media = false, from_media = false;
};

DocChoice parse_image_docs(const std::string& s) {
  DocChoice c;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part == "gen") c.to_media = true;
    else if (part == "cap") c.from_media = true;
    else fail("--image-docs: unknown document kind '", part, "' (want gen, cap or gen,cap)");
  }
  if (!c.to_media && !c.from_media) fail("--image-docs must name gen, cap or both");
  return c;
}

void check_options(const PrepareOptions& o) {
  if (o.in.empty()) fail("--in DIR is required");
  if (o.out.empty()) fail("--out DIR is required");
  if (!(o.val_fraction >= 0 && o.val_fraction <= 0.5)) fail("--val-fraction must be in [0, 0.5] (got ", o.val_fraction, ")");
  if (o.patch < 1 || o.patch > 64) fail("--patch must be in [1, 64] (got ", o.patch, ")");
  if (o.image_size < o.patch || o.image_size > 512 || o.image_size % o.patch)
    fail("--image-size must be a multiple of --patch ", o.patch, " in [", o.patch, ", 512] (got ", o.image_size, ")");
  if (o.codebook < 2 || o.codebook > 65536) fail("--codebook must be in [2, 65536] (got ", o.codebook, ")");
  if (o.text_vocab < 128 || o.text_vocab > 65536) fail("--text-vocab must be in [128, 65536] (got ", o.text_vocab, ")");
  if (o.vq_iters < 0 || o.vq_iters > 1000) fail("--vq-iters must be in [0, 1000] (got ", o.vq_iters, ")");
  if (o.vq_sample < 1) fail("--vq-sample must be at least 1 (got ", o.vq_sample, ")");
  if (o.text_sample_mb < 1 || o.text_sample_mb > 4096) fail("--text-sample-mb must be in [1, 4096] (got ", o.text_sample_mb, ")");
  if (o.shard_tokens < 1024) fail("--shard-tokens must be at least 1024 (got ", o.shard_tokens, ")");
  if (o.speech_units < 2 || o.speech_units > 65536) fail("--speech-units must be in [2, 65536] (got ", o.speech_units, ")");
  if (o.speech_iters < 1 || o.speech_iters > 1000) fail("--speech-iters must be in [1, 1000] (got ", o.speech_iters, ")");
  if (o.speech_sample_frames < o.speech_units)
    fail("--speech-sample-frames ", o.speech_sample_frames, " is below --speech-units ", o.speech_units);
  if (!(o.speech_max_seconds >= 1 && o.speech_max_seconds <= 3600))
    fail("--speech-max-seconds must be in [1, 3600] (got ", o.speech_max_seconds, ")");
  parse_image_docs(o.image_docs);
  std::error_code ec;
  if (fs::exists(o.out, ec) && fs::exists(o.in, ec) && fs::equivalent(o.in, o.out, ec))
    fail("--out ", o.out, " is the input folder");
}

// The files prepare writes into --out; --force removes exactly these (and leftovers
// of interrupted atomic writes) so an earlier, bigger run leaves no stale shards.
bool is_ours(const std::string& name, const std::vector<std::unique_ptr<MediaKind>>& kinds) {
  if (name == "vocab.json" || name == "text.model" || name == "summary.json") return true;
  if (name.size() > 6 && name.compare(name.size() - 6, 6, ".shard") == 0) return true;
  if (name.find(".tmp.") != std::string::npos) return true;
  for (const auto& k : kinds)
    if (k->pending().empty())
      for (const auto& f : k->files())
        if (name == f) return true;
  return false;
}

// Refuses a non-empty --out without --force before any work is done.
void check_out_dir(const PrepareOptions& o) {
  std::error_code ec;
  if (!fs::exists(o.out, ec)) return;
  if (fs::is_directory(o.out, ec)) io::remove_stale_temporaries(o.out, false);  // left by a killed earlier run
  if (!fs::is_directory(o.out, ec)) fail(o.out, ": exists and is not a directory");
  if (!fs::is_empty(o.out, ec) && !o.force)
    fail(o.out, ": directory is not empty (pass --force to replace the prepared data in it)");
}

// Creates (or, with --force, cleans) --out; true if it created it.
bool make_out_dir(const PrepareOptions& o, const std::vector<std::unique_ptr<MediaKind>>& kinds) {
  std::error_code ec;
  const bool existed = fs::exists(o.out, ec);
  if (existed)
    for (const auto& e : fs::directory_iterator(o.out, ec))
      if (e.is_regular_file() && is_ours(e.path().filename().string(), kinds)) fs::remove(e.path(), ec);
  create_writable_dir(o.out);
  return !existed;
}

// One source of documents in pass 2: a text range of a text item, or a media item.
struct Unit {
  size_t item;
  size_t range;  // text: index into Item::ranges
};

struct UnitOut {
  std::vector<uint32_t> codes;  // media: the file's codes from its kind
  std::vector<uint32_t> pieces; // ... cut into spans of these lengths (Encoded::pieces)
  std::vector<std::vector<uint32_t>> docs;
  std::vector<std::string> kinds;
  std::string error;
};

std::vector<uint32_t> ids(const TextTokenizer& tok, const std::string& text) {
  std::vector<uint32_t> out;
  for (int id : tok.encode(text)) out.push_back(static_cast<uint32_t>(id));
  return out;
}

class Preparer {
 public:
  explicit Preparer(const PrepareOptions& o) : o_(o), kinds_(media_kinds(o)), docs_(parse_image_docs(o.image_docs)) {}

  void run() {
    const auto t0 = std::chrono::steady_clock::now();
    if (!o_.tokenizers.empty()) load_tokenizers(o_.tokenizers, kinds_, tk_);
    check_out_dir(o_);
    scan_ = scan_input(o_.in, o_.out, kinds_, o_.seed);
    assign_validation(scan_, o_.val_fraction);
    if (scan_.items.empty()) nothing_usable();
    check_reused_cover_input();
    pass1_text();
    if (usable_items() == 0) nothing_usable();  // before spending time on tokenizers
    if (o_.tokenizers.empty()) train_tokenizers();
    if (usable_items() == 0) nothing_usable();
    tell_heldout();
    const bool created = make_out_dir(o_, kinds_);
    ShardSink sink(o_.out, tk_.modalities, static_cast<uint64_t>(o_.shard_tokens));
    pass2_encode(sink);
    if (sink.documents() == 0) {
      std::error_code ec;
      if (created) fs::remove(o_.out, ec);  // only if still empty: remove() fails otherwise
      nothing_usable();
    }
    sink.finish();
    write_tokenizers();
    const json summary = make_summary(sink);
    io::write_file_atomic(o_.out + "/summary.json", summary.dump(2) + "\n");
    print_summary_lines(summary, o_.out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

 private:
  void say(const std::string& msg) const {
    if (!o_.quiet) std::fprintf(stderr, "prepare: %s\n", msg.c_str());
  }

  std::vector<Skip> all_skips() const {
    std::vector<Skip> s = scan_.skipped;
    for (const Item& it : scan_.items)
      if (!it.bad.empty()) s.push_back({it.rel, it.bad});
    std::sort(s.begin(), s.end(), [](const Skip& a, const Skip& b) { return a.rel < b.rel; });
    return s;
  }

  size_t usable_items() const {
    return std::count_if(scan_.items.begin(), scan_.items.end(), [](const Item& it) { return it.bad.empty(); });
  }

  [[noreturn]] void nothing_usable() const {
    const auto skips = all_skips();
    std::string why = cat(o_.in, ": nothing to prepare: no usable text, image or audio files (", scan_.files, " files seen");
    if (!skips.empty()) why += cat(", ", skips.size(), " skipped, e.g. ", skips[0].rel, ": ", skips[0].reason);
    fail(why, ")");
  }

  // With --tokenizers, files of a media kind FROM has no tokenizer for cannot be
  // encoded: they are skipped with that reason (never fatal, like broken files; an
  // input left with nothing usable is still an error).
  void check_reused_cover_input() {
    if (o_.tokenizers.empty()) return;
    for (Item& it : scan_.items)
      if (it.kind >= 0 && tk_.begin[it.kind] < 0 && it.bad.empty())
        it.bad = cat("--tokenizers ", o_.tokenizers, " has no ", kinds_[it.kind]->name(), " tokenizer");
  }

  // Always printed (--quiet too): something the user should know about the output.
  static void warn(const std::string& msg) { std::fprintf(stderr, "prepare: %s\n", msg.c_str()); }

  // The usable items of a kind in one split, in seeded-hash order: a sample that does
  // not depend on folder names.
  std::vector<size_t> by_hash(int kind, bool val) const {
    std::vector<size_t> order;
    for (size_t i = 0; i < scan_.items.size(); ++i)
      if (scan_.items[i].kind == kind && scan_.items[i].val == val && scan_.items[i].bad.empty()) order.push_back(i);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scan_.items[a].hash < scan_.items[b].hash; });
    return order;
  }

  // Training items of a kind in hash order; a tiny input with every file of this kind
  // held out learns from those.
  std::vector<size_t> sample_order(int kind) const {
    std::vector<size_t> order = by_hash(kind, false);
    return order.empty() ? by_hash(kind, true) : order;
  }

  // Pass 1: every text file is checked (UTF-8, cut into documents) in path order; the
  // files picked for the BPE sample (by hash, up to its budget) give their lines.
  void pass1_text() {
    const bool sampling = o_.tokenizers.empty();
    const uint64_t budget = static_cast<uint64_t>(o_.text_sample_mb) << 20;
    const bool has_text = std::any_of(scan_.items.begin(), scan_.items.end(), [](const Item& it) { return it.kind < 0; });
    // Captions and text files share the budget when both exist.
    text_budget_ = scan_.captions ? budget / 2 : budget;
    caption_budget_ = has_text ? budget - text_budget_ : budget;
    if (!has_text) text_budget_ = 0;
    const uint64_t per_file = std::max<uint64_t>(text_budget_ / 8, 64 << 10);
    std::vector<bool> in_sample(scan_.items.size(), false);
    if (sampling) {
      uint64_t planned = 0;
      for (size_t i : sample_order(-1)) {
        if (planned >= text_budget_) break;
        in_sample[i] = true;
        planned += std::min(scan_.items[i].bytes, per_file);
      }
    }
    uint64_t files = 0, bytes = 0;
    for (const Item& it : scan_.items)
      if (it.kind < 0) ++files, bytes += it.bytes;
    std::unique_ptr<Progress> progress;
    if (files) progress = std::make_unique<Progress>("checking text", files, bytes, o_.quiet);
    for (size_t i = 0; i < scan_.items.size(); ++i) {
      Item& it = scan_.items[i];
      if (it.kind >= 0) continue;
      uint64_t taken = 0;
      auto take = [&](std::string_view piece) {
        for_each_sentence(piece, kMaxSentence, [&](std::string_view s) {
          if (taken >= per_file || text_taken_ >= text_budget_) return;
          sentences_.emplace_back(s);
          taken += s.size();
          text_taken_ += s.size();
        });
      };
      it.bad = scan_text_file(scan_.path(it.rel), it.ranges,
                              in_sample[i] ? std::function<void(std::string_view)>(take) : nullptr);
      progress->advance(1, it.bytes);
    }
    if (progress) progress->finish();
    if (!sampling) return;
    // Every sampled text file broken (or only held-out ones usable): the sample comes
    // from the usable ones instead, training files first, so a broken file never
    // leaves the BPE without the text of valid ones.
    if (text_taken_ == 0 && text_budget_ > 0) {
      std::vector<size_t> order = by_hash(-1, false), heldout = by_hash(-1, true);
      order.insert(order.end(), heldout.begin(), heldout.end());
      for (size_t i : order) {
        if (text_taken_ >= text_budget_) break;
        if (in_sample[i]) continue;  // read already: it gave no sentence
        uint64_t taken = 0;
        std::vector<TextRange> ranges;
        scan_text_file(scan_.path(scan_.items[i].rel), ranges, [&](std::string_view piece) {
          for_each_sentence(piece, kMaxSentence, [&](std::string_view s) {
            if (taken >= per_file || text_taken_ >= text_budget_) return;
            sentences_.emplace_back(s);
            taken += s.size();
            text_taken_ += s.size();
          });
        });
      }
    }
    for (size_t k = 0; k < kinds_.size(); ++k) {
      if (!kinds_[k]->pending().empty()) continue;
      for (size_t i : sample_order(static_cast<int>(k))) {
        for (const CaptionRef& ref : scan_.items[i].captions) {
          if (caption_taken_ >= caption_budget_) break;
          try {
            const std::string c = read_caption(scan_, ref);
            sentences_.push_back(c);
            caption_taken_ += c.size();
          } catch (const Error& e) {
            scan_.items[i].bad = e.what();
          }
        }
      }
    }
  }

  void train_tokenizers() {
    if (sentences_.empty()) sentences_.push_back(".");  // no text at all: the BPE still needs its specials
    char mb[32];
    std::snprintf(mb, sizeof mb, "%.2f", static_cast<double>(text_taken_ + caption_taken_) / 1e6);
    say(cat("learning a BPE of up to ", o_.text_vocab, " pieces on ", mb, " MB of text (", sentences_.size(), " lines)"));
    // <bos_speech>/<eos_speech> exist only when there is audio, so text+image output
    // stays what it was before speech.
    const bool audio = std::any_of(scan_.items.begin(), scan_.items.end(), [&](const Item& it) {
      return it.kind >= 0 && kinds_[it.kind]->name() == "speech";
    });
    tk_.text = TextTokenizer::train(sentences_, o_.text_vocab, audio);
    sentences_ = {};
    std::vector<bool> in_use(kinds_.size(), false);
    for (size_t k = 0; k < kinds_.size(); ++k) {
      if (!kinds_[k]->pending().empty()) continue;
      const int kind = static_cast<int>(k);
      const std::string& name = kinds_[k]->name();
      const size_t files = std::count_if(scan_.items.begin(), scan_.items.end(), [&](const Item& it) { return it.kind == kind; });
      std::vector<size_t> order = by_hash(kind, false);
      const std::vector<size_t> heldout = by_hash(kind, true);
      const bool only_heldout = order.empty();
      if (only_heldout) order = heldout;  // a tiny input with every file of this kind held out
      if (!order.empty()) {
        say(cat("learning the ", name, " tokenizer from a sample of up to ", order.size(), " files"));
        learn(k, order);
        // Every training file of the kind broken: learn from the held-out ones, so a
        // broken file only ever removes itself, never a valid one in the other split.
        if (kinds_[k]->vocab_size() == 0 && !only_heldout && !heldout.empty()) {
          say(cat("no training ", name, " file is usable: learning the ", name, " tokenizer from the ",
                  heldout.size(), " held-out ones"));
          learn(k, heldout);
        }
      }
      in_use[k] = kinds_[k]->vocab_size() > 0;
      if (in_use[k] || files == 0) continue;
      // No usable file of this kind at all: no tokenizer, so no modality for it. Each
      // file is skipped with its own reason (train() reads on until it has a sample,
      // so none is left unread; one would be skipped with this reason).
      for (Item& it : scan_.items)
        if (it.kind == kind && it.bad.empty()) it.bad = cat("no usable ", name, " file to learn the tokenizer from");
      if (usable_items() == 0) continue;  // nothing at all: the error says it
      const auto first = std::find_if(scan_.items.begin(), scan_.items.end(), [&](const Item& it) { return it.kind == kind; });
      warn(cat("no usable ", name, " file: all ", files, " skipped, so the output has no ", name,
               " modality (e.g. ", first->rel, ": ", first->bad, "; all in summary.json)"));
    }
    build_vocab(kinds_, in_use, tk_);
  }

  // Trains kind k's tokenizer on the items `order`; the files it could not use are
  // skipped with their own reasons.
  void learn(size_t k, const std::vector<size_t>& order) {
    std::vector<std::string> paths;
    for (size_t i : order) paths.push_back(scan_.path(scan_.items[i].rel));
    for (const auto& [pos, why] : kinds_[k]->train(paths, o_.quiet)) scan_.items[order.at(pos)].bad = why;
  }

  // Each kind in use learns which of its files are held out (path order).
  void tell_heldout() {
    if (o_.val_fraction > 0 && std::none_of(scan_.items.begin(), scan_.items.end(),
                                            [](const Item& it) { return it.val && it.bad.empty(); }))
      warn(cat("no usable file falls in the validation split (--val-fraction ", o_.val_fraction, " of ",
               usable_items(), " files, by path hash), so mot train will not validate; a larger --val-fraction "
               "or more files hold some out"));
    for (size_t k = 0; k < kinds_.size(); ++k) {
      if (tk_.begin[k] < 0) continue;
      std::vector<std::string> paths;
      for (const Item& it : scan_.items)
        if (it.kind == static_cast<int>(k) && it.val && it.bad.empty()) paths.push_back(scan_.path(it.rel));
      kinds_[k]->set_heldout(paths);
    }
  }

  // Pass 2: documents in path order, a batch at a time: media decoded and encoded by
  // their kind, text and captions tokenised in parallel, then appended in order.
  void pass2_encode(ShardSink& sink) {
    std::vector<Unit> units;
    uint64_t total_bytes = 0, total_files = 0;
    for (size_t i = 0; i < scan_.items.size(); ++i) {
      const Item& it = scan_.items[i];
      if (!it.bad.empty()) continue;
      ++total_files;
      total_bytes += it.bytes;
      if (it.kind < 0)
        for (size_t r = 0; r < it.ranges.size(); ++r) units.push_back({i, r});
      else
        units.push_back({i, 0});
    }
    Progress progress("encoding", total_files, total_bytes, o_.quiet);
    for (size_t b0 = 0; b0 < units.size();) {
      size_t b1 = b0;
      uint64_t bytes = 0;
      while (b1 < units.size() && b1 - b0 < kBatchUnits && bytes < kBatchBytes) bytes += unit_bytes(units[b1++]);
      std::vector<UnitOut> out(b1 - b0);
      encode_media(units, b0, b1, out);
#pragma omp parallel for schedule(dynamic)
      for (size_t u = b0; u < b1; ++u) make_docs(units[u], out[u - b0]);
      uint64_t files_done = 0, bytes_done = 0;
      for (size_t u = b0; u < b1; ++u) {
        Item& it = scan_.items[units[u].item];
        UnitOut& r = out[u - b0];
        if (!r.error.empty() && it.bad.empty()) it.bad = r.error;
        if (r.error.empty())
          for (size_t d = 0; d < r.docs.size(); ++d) sink.add(it.val, r.kinds[d], r.docs[d]);
        const bool last = it.kind >= 0 || units[u].range + 1 == it.ranges.size();
        files_done += last;
        bytes_done += last ? it.bytes : 0;
      }
      progress.advance(files_done, bytes_done);
      b0 = b1;
    }
    progress.finish();
  }

  uint64_t unit_bytes(const Unit& u) const {
    const Item& it = scan_.items[u.item];
    return it.kind < 0 ? it.ranges[u.range].length : it.bytes;
  }

  // Media of the batch, per kind, through the kind's (internally parallel) encoder.
  void encode_media(const std::vector<Unit>& units, size_t b0, size_t b1, std::vector<UnitOut>& out) {
    for (size_t k = 0; k < kinds_.size(); ++k) {
      std::vector<std::string> paths;
      std::vector<size_t> where;
      for (size_t u = b0; u < b1; ++u)
        if (scan_.items[units[u].item].kind == static_cast<int>(k)) {
          paths.push_back(scan_.path(scan_.items[units[u].item].rel));
          where.push_back(u - b0);
        }
      if (paths.empty()) continue;
      std::vector<Encoded> enc = kinds_[k]->encode(paths);
      for (size_t j = 0; j < where.size(); ++j) {
        out[where[j]].error = std::move(enc[j].error);
        out[where[j]].codes = std::move(enc[j].codes);
        out[where[j]].pieces = std::move(enc[j].pieces);
      }
    }
  }

  // Builds a unit's documents (runs in parallel: reads files, touches only `r`).
  void make_docs(const Unit& u, UnitOut& r) const {
    if (!r.error.empty()) return;
    const Item& it = scan_.items[u.item];
    const TextTokenizer& tok = tk_.text;
    try {
      if (it.kind < 0) {
        const std::string text = read_text_range(scan_.path(it.rel), it.ranges[u.range]);
        if (utf8_error_at(text) != text.size()) fail("file changed while preparing (no longer UTF-8)");
        std::vector<uint32_t> d{static_cast<uint32_t>(tok.bos_id())};
        for (uint32_t id : ids(tok, text)) d.push_back(id);
        d.push_back(static_cast<uint32_t>(tok.eos_id()));
        r.docs.push_back(std::move(d));
        r.kinds.push_back("text");
        return;
      }
      const MediaKind& kind = *kinds_[it.kind];
      const auto names = kind.doc_names();
      const auto [open, close] = kind.markers(tok);
      const uint32_t base = static_cast<uint32_t>(tk_.begin[it.kind]);
      const std::vector<uint32_t>& codes = r.codes;
      auto span = [&](std::vector<uint32_t>& d, size_t b, size_t e) {
        d.push_back(static_cast<uint32_t>(open));
        for (size_t i = b; i < e; ++i) d.push_back(base + codes[i]);
        d.push_back(static_cast<uint32_t>(close));
      };
      auto media = [&](std::vector<uint32_t>& d) { span(d, 0, codes.size()); };
      const uint32_t bos = static_cast<uint32_t>(tok.bos_id()), eos = static_cast<uint32_t>(tok.eos_id());
      // --image-docs picks the image directions; other kinds always make both.
      const DocChoice both{true, true};
      const DocChoice& choice = kind.name() == "image" ? docs_ : both;
      if (!r.pieces.empty()) {
        // A long recording cut into utterances: each is an only-document; its
        // captions (transcripts) cannot be aligned to the pieces and become text.
        size_t at = 0;
        for (uint32_t len : r.pieces) {
          std::vector<uint32_t> d{bos};
          span(d, at, at + len);
          d.push_back(eos);
          at += len;
          r.docs.push_back(std::move(d));
          r.kinds.push_back(names.only);
        }
        for (const CaptionRef& ref : it.captions) {
          std::vector<uint32_t> d{bos};
          for (uint32_t id : ids(tok, read_caption(scan_, ref))) d.push_back(id);
          d.push_back(eos);
          r.docs.push_back(std::move(d));
          r.kinds.push_back("text");
        }
        return;
      }
      if (it.captions.empty()) {
        std::vector<uint32_t> d{bos};
        media(d);
        d.push_back(eos);
        r.docs.push_back(std::move(d));
        r.kinds.push_back(names.only);
      }
      for (const CaptionRef& ref : it.captions) {
        const std::vector<uint32_t> cap = ids(tok, read_caption(scan_, ref));
        if (choice.to_media) {
          std::vector<uint32_t> d{bos};
          d.insert(d.end(), cap.begin(), cap.end());
          media(d);
          d.push_back(eos);
          r.docs.push_back(std::move(d));
          r.kinds.push_back(names.to_media);
        }
        if (choice.from_media) {
          std::vector<uint32_t> d{bos};
          media(d);
          d.insert(d.end(), cap.begin(), cap.end());
          d.push_back(eos);
          r.docs.push_back(std::move(d));
          r.kinds.push_back(names.from_media);
        }
      }
    } catch (const std::exception& e) {
      std::string why = e.what();
      const std::string prefix = scan_.path(it.rel) + ": ";
      if (why.rfind(prefix, 0) == 0) why.erase(0, prefix.size());
      r.docs.clear();
      r.kinds.clear();
      r.error = why;
    }
  }

  void write_tokenizers() const {
    if (!o_.tokenizers.empty()) {
      // Reused tokenizers are copied byte for byte, so data prepared against them is
      // interchangeable with FROM's.
      for (const auto& [name, bytes] : tk_.reused) io::write_file_atomic(o_.out + "/" + name, bytes);
    } else {
      tk_.text.save(o_.out + "/text.model");
      for (size_t k = 0; k < kinds_.size(); ++k)
        if (tk_.begin[k] >= 0) kinds_[k]->save(o_.out);
    }
    tk_.vocab.write(o_.out);
  }

  json make_summary(const ShardSink& sink) const {
    json s = sink.summary();
    s["input"] = o_.in;
    s["seed"] = o_.seed;
    s["val_fraction"] = o_.val_fraction;
    uint64_t used_text = 0, captioned = 0, uncaptioned = 0, captions = 0;
    std::map<std::string, uint64_t> used_media;
    for (const Item& it : scan_.items) {
      if (!it.bad.empty()) continue;
      if (it.kind < 0) {
        ++used_text;
        continue;
      }
      ++used_media[kinds_[it.kind]->name()];
      (it.captions.empty() ? uncaptioned : captioned) += 1;
      captions += it.captions.size();
    }
    const auto skips = all_skips();
    json files = {{"seen", scan_.files}, {"text", used_text}, {"caption_files", scan_.caption_files.size()},
                  {"skipped", skips.size()}, {"hidden_ignored", scan_.hidden}};
    for (const auto& k : kinds_)
      if (k->pending().empty()) files[k->name()] = used_media[k->name()];
    s["files"] = files;
    s["media"] = {{"captioned", captioned}, {"uncaptioned", uncaptioned}, {"captions", captions}};
    json skipped = json::array();
    for (const auto& sk : skips) skipped.push_back({{"path", sk.rel}, {"reason", sk.reason}});
    s["skipped"] = skipped;
    s["caption_warnings"] = scan_.warnings;
    json tok = {{"source", o_.tokenizers.empty() ? "trained" : o_.tokenizers},
                {"text_vocab", tk_.text.vocab_size()},
                {"vocab_size", tk_.modalities.back().end}};
    if (o_.tokenizers.empty()) tok["text_sample_bytes"] = text_taken_ + caption_taken_;
    s["tokenizers"] = tok;
    for (size_t k = 0; k < kinds_.size(); ++k)
      if (tk_.begin[k] >= 0) kinds_[k]->report(s[kinds_[k]->name()]);
    return s;
  }

  const PrepareOptions& o_;
  std::vector<std::unique_ptr<MediaKind>> kinds_;
  DocChoice docs_;
  Tokenizers tk_;
  Scan scan_;
  std::vector<std::string> sentences_;
  uint64_t text_budget_ = 0, caption_budget_ = 0, text_taken_ = 0, caption_taken_ = 0;
};

}  // namespace

void prepare_data(const PrepareOptions& o) {
  check_options(o);
  Preparer(o).run();
}

}  // namespace mot::data
