// Training and evaluation data: JSONL token rows (SPEC section 4) and token-shard
// directories (format in shard.hpp / README.md), both delivered as TokenBatch rows.
#pragma once
#include <cstdint>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include "mot/core/rng.hpp"
#include "mot/data/format/shard.hpp"
#include "mot/model/config.hpp"
#include "mot/data/format/token_batch.hpp"

namespace mot::data {

// Reads {"tokens": [ids...]} lines. Every id must be in [0, vocab_size) except -1
// padding at the end of a row. Errors name file and line. Empty input is an error; so is
// a file that is not JSONL at all (a token shard, a binary file), named as such.
std::vector<std::vector<int32_t>> read_jsonl_rows(const std::string& path, int64_t vocab_size);

// A JSONL row of the Transfusion setting (SPEC 2b): tokens with -2 at continuous
// positions; per image span (each maximal run of -2) its clean latents, and its τ and
// noise when the row gives them (span_t -1 and zero noise when it does not).
struct JsonlRow {
  std::vector<int32_t> tokens;
  std::vector<float> latents, noise;  // latent_dim values per -2 entry
  std::vector<int32_t> span_t;
};
// Reads rows for model c: as read_jsonl_rows, and for a model with a continuous
// modality also {"tokens": [...], "images": [{"latents": [[...]...], "noise": [[...]...],
// "t": τ}, ...]} ("noise" and "t" together or not at all). Every image span must have the
// modality's patches per image, every vector its latent_dim finite values, τ in
// [0, diffusion_steps - 1], and a row may not end inside a span; errors name file and line.
std::vector<JsonlRow> read_jsonl_data(const std::string& path, const ModelConfig& c);
// The parser itself, on a stream named `origin` in messages (c null: token rows only, as
// read_jsonl_rows); for the fuzzer.
std::vector<JsonlRow> parse_jsonl_stream(std::istream& in, const std::string& origin, int64_t vocab_size,
                                         const ModelConfig* c);

// The rows a data source hands out, in a deterministic order given by a cursor
// (the number of rows already delivered), so training can resume exactly.
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int64_t row_len() const = 0;            // tokens per row (positions + 1)
  virtual int64_t n_rows() const = 0;             // rows per epoch
  virtual void fill(uint64_t index, int32_t* dst) const = 0;  // row `index` (any index, wraps)
  // Transfusion: latent values per continuous (-2) entry; 0 for token-only data.
  virtual int64_t latent_dim() const { return 0; }
  // Appends row `index`'s continuous entries (TokenBatch layout): their clean latents to
  // `latents`, and per image span its explicit τ (-1: none) to `span_t` and its noise
  // (zeros without τ) to `noise`.
  virtual void fill_continuous(uint64_t /*index*/, std::vector<float>& /*latents*/, std::vector<float>& /*noise*/,
                               std::vector<int32_t>& /*span_t*/) const {}
  virtual std::string describe() const = 0;
};

// JSONL rows, all padded with -1 to the longest row; row i of the file is index i.
std::unique_ptr<RowSource> jsonl_source(const std::string& path, const ModelConfig& c);

// What a source is opened for: only changes the error message when the data is too
// short for one window. Default: Train when shuffled, else Read.
enum class Use { Default, Train, Validate, Evaluate, Read };

// Windows of seq_len + 1 tokens at stride seq_len over the shards of `files`
// (consecutive windows share one token so every token is a target once). With
// shuffle, each epoch visits the windows in a seeded random order.
// For a model with a continuous modality (Transfusion) a row is instead a run of whole
// consecutive documents that fits seq_len + 1 entries, padded with -1, so no image is
// ever cut; a longer document is an error. The shards' images fill fill_continuous().
std::unique_ptr<RowSource> shard_source(const std::vector<std::string>& files, const ModelConfig& c,
                                        int64_t seq_len, bool shuffle, uint64_t seed, Use use = Use::Default);

struct DataDir {
  std::vector<std::string> train, val;  // *.shard files: names starting "val" are validation
};
DataDir list_data_dir(const std::string& dir);

// Opens D (a .jsonl file or a shard directory) for training or evaluation.
// split = "train" or "val"; a directory without val shards gives nullptr for "val".
// Any other file (a single .shard, a model, ...) is refused with a message saying
// what D must be.
std::unique_ptr<RowSource> open_source(const std::string& path, const ModelConfig& c, int64_t seq_len,
                                       const std::string& split, bool shuffle, uint64_t seed, Use use = Use::Default);

// Validation sets of a data directory: val*.shard files grouped by name
// ("val-img2cap.shard", "val-img2cap-001.shard" -> set "img2cap"; "val-000.shard" ->
// set ""). A .jsonl path or a directory without val shards gives no sets.
struct NamedSource {
  std::string name;
  std::unique_ptr<RowSource> src;
};
std::vector<NamedSource> open_val_sets(const std::string& path, const ModelConfig& c, int64_t seq_len);

// Fills `batch` with `rows` consecutive rows starting at `cursor`.
void fill_batch(const RowSource& src, uint64_t cursor, int64_t rows, TokenBatch& batch);

// Number of (input, target) pairs in a batch: sum over rows of (valid tokens - 1).
int64_t count_targets(const TokenBatch& batch);

}  // namespace mot::data
