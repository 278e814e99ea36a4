#include "mot/data/format/shard.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>
#include <string_view>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/mapped_file.hpp"

// Fields are little-endian and read with memcpy, so the host must match.
static_assert(std::endian::native == std::endian::little, "mot assumes a little-endian host");

namespace mot::data {
namespace {

constexpr char kMagic[8] = {'M', 'O', 'T', 'S', 'H', 'R', 'D', '1'};
constexpr uint32_t kVersion = 1, kVersionImages = 2;
constexpr size_t kImageHeadBytes = 32 + 16 + 8;  // name, geometry, n_images
constexpr uint32_t kMaxImageSize = 4096, kMaxChannels = 4;
constexpr size_t kHeaderBytes = 40;
constexpr size_t kEntryBytes = 40;  // name[32] + begin + end
constexpr size_t kNameBytes = 32;
constexpr uint32_t kMaxModalities = 4096;

// Unaligned little-endian load (the token section may start at any byte in parse()).
template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Modality names are identifiers ([a-z][a-z0-9_]*) that fit the 32-byte field.
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > kNameBytes || s[0] < 'a' || s[0] > 'z') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// What both the reader and the writer require of the modality table.
void check_modalities(const std::vector<ModalityRange>& m, const std::string& origin) {
  if (m.empty() || m.size() > kMaxModalities)
    fail(origin, ": number of modalities ", m.size(), " is not in [1, ", kMaxModalities, "]");
  // read_tokens() hands out int32 ids, so every id must fit: vocab_size <= 2^31.
  if (m.back().end > (uint32_t{1} << 31))
    fail(origin, ": vocab_size ", m.back().end, " exceeds 2^31 (token ids are int32)");
  std::set<std::string_view> names;
  for (size_t i = 0; i < m.size(); ++i) {
    const ModalityRange& r = m[i];
    if (!valid_name(r.name)) {
      std::string shown;  // the name may hold any bytes: keep the message one printable line
      for (char c : r.name.substr(0, 40)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
      fail(origin, ": modality ", i, " has an invalid name '", shown, "' (want [a-z][a-z0-9_]*, 1 to 32 chars)");
    }
    if (!names.insert(r.name).second) fail(origin, ": duplicate modality name '", r.name, "'");
    if (r.begin >= r.end) fail(origin, ": modality '", r.name, "' has an empty range [", r.begin, ", ", r.end, ")");
    uint32_t want = i == 0 ? 0 : m[i - 1].end;
    if (r.begin != want)
      fail(origin, ": modality '", r.name, "' begins at ", r.begin, ", expected ", want,
           " (ranges must be contiguous from 0)");
  }
}

// Index of the first token >= vocab, or n if none. The max-reduction loop vectorizes;
// the exact position is only searched for when something is wrong.
template <class T>
size_t first_bad_token(const uint8_t* p, size_t n, uint32_t vocab) {
  uint32_t mx = 0;
  for (size_t i = 0; i < n; ++i) mx = std::max<uint32_t>(mx, load<T>(p + i * sizeof(T)));
  if (mx < vocab) return n;
  for (size_t i = 0; i < n; ++i)
    if (load<T>(p + i * sizeof(T)) >= vocab) return i;
  return n;
}


// What both the reader and the writer require of the image section: geometry, and
// spans that are increasing, inside the tokens, inside one document each, and whose
// positions hold token 0. `start(k)`, `token(i)`, `doc(d)` read the section.
template <class Start, class Token, class Doc>
void check_images(const std::string& origin, const std::string& name, uint32_t size, uint32_t channels, uint32_t patch,
                  size_t n_images, uint64_t n_tokens, size_t n_docs, Start start, Token token, Doc doc) {
  if (!valid_name(name)) fail(origin, ": the image section's modality name is invalid (want [a-z][a-z0-9_]*)");
  if (patch < 1 || size < patch || size > kMaxImageSize || size % patch)
    fail(origin, ": image_size ", size, " is not a positive multiple of the patch ", patch, " (at most ", kMaxImageSize, ")");
  if (channels < 1 || channels > kMaxChannels) fail(origin, ": image channels ", channels, " not in [1, ", kMaxChannels, "]");
  const uint64_t P = uint64_t{size / patch} * (size / patch);
  size_t d = 0;
  uint64_t prev_end = 0;
  for (size_t k = 0; k < n_images; ++k) {
    const uint64_t s = start(k);
    if (s < prev_end) fail(origin, ": image ", k, " starts at ", s, ", inside or before the previous image");
    if (s > n_tokens || P > n_tokens - s)
      fail(origin, ": image ", k, " at position ", s, " runs past the end of the tokens (", n_tokens, ")");
    while (d < n_docs && doc(d + 1) <= s) ++d;
    if (s + P >= doc(d + 1))
      fail(origin, ": image ", k, " at position ", s, " is not followed by a token of its document (<eoi>)");
    for (uint64_t i = s; i < s + P; ++i)
      if (token(i) != 0) fail(origin, ": token ", i, " inside image ", k, " is ", token(i), ", expected 0");
    prev_end = s + P;
  }
}

}  // namespace

Shard Shard::open(const std::string& path) {
  size_t size = 0;
  std::shared_ptr<void> mapping = io::map_file(path, &size);
  Shard s = parse({static_cast<const uint8_t*>(mapping.get()), size}, path);
  s.mapping_ = std::move(mapping);
  return s;
}

Shard Shard::parse(std::span<const uint8_t> bytes, const std::string& origin) {
  auto bad = [&](const auto&... why) { fail(origin, ": ", why...); };
  Shard s;
  s.origin_ = origin;
  s.bytes_ = bytes;
  const uint8_t* p = bytes.data();
  const size_t size = bytes.size();

  if (size < kHeaderBytes) bad("file too short for a shard header (", size, " bytes)");
  if (std::memcmp(p, kMagic, 8) != 0) bad("not a token shard (bad magic)");
  uint32_t version = load<uint32_t>(p + 8);
  if (version != kVersion && version != kVersionImages)
    bad("unsupported shard version ", version, " (this mot reads versions 1 and 2)");
  s.token_bytes_ = load<uint32_t>(p + 12);
  if (s.token_bytes_ != 2 && s.token_bytes_ != 4) bad("token_bytes is ", s.token_bytes_, ", expected 2 or 4");
  uint64_t n_tokens = load<uint64_t>(p + 16);
  uint64_t n_docs = load<uint64_t>(p + 24);
  uint32_t n_mod = load<uint32_t>(p + 32);
  if (n_mod < 1 || n_mod > kMaxModalities) bad("number of modalities ", n_mod, " is not in [1, ", kMaxModalities, "]");
  if (load<uint32_t>(p + 36) != 0) bad("reserved header field is not 0");

  s.tokens_off_ = kHeaderBytes + kEntryBytes * n_mod;  // n_mod <= 4096: cannot overflow
  if (size < s.tokens_off_) bad("file truncated inside the modality table");
  for (uint32_t i = 0; i < n_mod; ++i) {
    const uint8_t* e = p + kHeaderBytes + kEntryBytes * i;
    const char* name = reinterpret_cast<const char*>(e);
    size_t len = strnlen(name, kNameBytes);
    // NUL padding must really be NUL so a name has exactly one byte representation.
    if (std::any_of(e + len, e + kNameBytes, [](uint8_t c) { return c != 0; }))
      bad("modality ", i, " name is not NUL-padded");
    s.modalities_.push_back({std::string(name, len), load<uint32_t>(e + 32), load<uint32_t>(e + 36)});
  }
  check_modalities(s.modalities_, origin);

  // Expected size = table + tokens + (n_docs + 1) offsets, every step overflow-checked
  // because n_tokens and n_docs come straight from the file.
  uint64_t token_section = 0, doc_count = 0, doc_section = 0, docs_off = 0, expected = 0;
  if (__builtin_mul_overflow(n_tokens, uint64_t{s.token_bytes_}, &token_section) ||
      __builtin_add_overflow(s.tokens_off_, token_section, &docs_off) ||
      __builtin_add_overflow(n_docs, uint64_t{1}, &doc_count) ||
      __builtin_mul_overflow(doc_count, uint64_t{8}, &doc_section) ||
      __builtin_add_overflow(docs_off, doc_section, &expected))
    bad("n_tokens ", n_tokens, " / n_docs ", n_docs, " are impossibly large");
  if (version == kVersionImages) {  // the image section follows the doc offsets
    const uint64_t head = expected;
    if (size < head || size - head < kImageHeadBytes) bad("file truncated before the image section");
    const uint8_t* h = p + head;
    const size_t len = strnlen(reinterpret_cast<const char*>(h), 32);
    if (std::any_of(h + len, h + 32, [](uint8_t c) { return c != 0; })) bad("image modality name is not NUL-padded");
    s.image_name_.assign(reinterpret_cast<const char*>(h), len);
    s.image_size_ = load<uint32_t>(h + 32);
    s.image_channels_ = load<uint32_t>(h + 36);
    s.image_patch_ = load<uint32_t>(h + 40);
    if (load<uint32_t>(h + 44) != 0) bad("reserved image field is not 0");
    const uint64_t n_images = load<uint64_t>(h + 48);
    if (s.image_patch_ < 1 || s.image_size_ > kMaxImageSize || s.image_channels_ > kMaxChannels)
      bad("image geometry ", s.image_size_, "x", s.image_size_, "x", s.image_channels_, " patch ", s.image_patch_,
          " is not valid");
    const uint64_t per_image = uint64_t{s.image_size_} * s.image_size_ * s.image_channels_;
    uint64_t starts = 0, pixels = 0, per = 0;
    if (__builtin_mul_overflow(n_images, uint64_t{8}, &starts) || __builtin_add_overflow(per_image, uint64_t{8}, &per) ||
        __builtin_mul_overflow(n_images, per, &pixels) || __builtin_add_overflow(head + kImageHeadBytes, pixels, &expected))
      bad("n_images ", n_images, " is impossibly large");
    s.n_images_ = n_images;
    s.image_starts_off_ = head + kImageHeadBytes;
    s.image_pixels_off_ = s.image_starts_off_ + starts;
  }
  if (expected != size)
    bad("file is ", size, " bytes but its header describes ", expected, " bytes",
        size < expected ? " (truncated?)" : " (trailing data)");
  s.n_tokens_ = n_tokens;
  s.n_docs_ = n_docs;
  s.docs_off_ = docs_off;

  // Every token must be a valid id, so training never indexes past the embedding table.
  const uint32_t vocab = s.vocab_size();
  const uint8_t* tok = p + s.tokens_off_;
  size_t badi = s.token_bytes_ == 2 ? first_bad_token<uint16_t>(tok, n_tokens, vocab)
                                    : first_bad_token<uint32_t>(tok, n_tokens, vocab);
  if (badi != n_tokens) bad("token ", badi, " = ", s.token(badi), " is not below vocab_size ", vocab);

  if (s.doc_offset(0) != 0) bad("first document offset is ", s.doc_offset(0), ", expected 0");
  for (size_t d = 1; d <= n_docs; ++d)
    if (s.doc_offset(d) < s.doc_offset(d - 1)) bad("document offsets decrease at document ", d);
  if (s.doc_offset(n_docs) != n_tokens)
    bad("last document offset is ", s.doc_offset(n_docs), ", expected n_tokens = ", n_tokens);
  if (version == kVersionImages)
    check_images(origin, s.image_name_, s.image_size_, s.image_channels_, s.image_patch_, s.n_images_, n_tokens, n_docs,
                 [&](size_t k) { return s.image_start(k); }, [&](uint64_t i) { return s.token(i); },
                 [&](size_t d) { return s.doc_offset(d); });
  return s;
}

uint32_t Shard::token(size_t i) const {
  if (i >= n_tokens_) fail(origin_, ": token index ", i, " out of range (", n_tokens_, " tokens)");
  const uint8_t* p = bytes_.data() + tokens_off_;
  return token_bytes_ == 2 ? load<uint16_t>(p + 2 * i) : load<uint32_t>(p + 4 * i);
}

void Shard::read_tokens(size_t begin, size_t n, int32_t* dst) const {
  if (begin > n_tokens_ || n > n_tokens_ - begin)
    fail(origin_, ": token range [", begin, ", ", begin, " + ", n, ") out of range (", n_tokens_, " tokens)");
  // Tokens are < vocab_size <= 2^31 (checked on open), so they fit int32.
  const uint8_t* p = bytes_.data() + tokens_off_;
  if (token_bytes_ == 2) {
    for (size_t i = 0; i < n; ++i) dst[i] = load<uint16_t>(p + 2 * (begin + i));
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<int32_t>(load<uint32_t>(p + 4 * (begin + i)));
  }
  if (n_images_ == 0) return;
  const uint64_t P = image_positions(), end = begin + n;
  // Images that overlap [begin, end): the first whose span ends after begin, onwards.
  size_t k = first_image_at_or_after(begin > P ? begin - P + 1 : 0);
  for (; k < n_images_ && image_start(k) < end; ++k) {
    const uint64_t a = std::max<uint64_t>(image_start(k), begin), b = std::min<uint64_t>(image_start(k) + P, end);
    for (uint64_t i = a; i < b; ++i) dst[i - begin] = kShardImageEntry;
  }
}

uint64_t Shard::image_start(size_t k) const {
  if (k >= n_images_) fail(origin_, ": image index ", k, " out of range (", n_images_, " images)");
  return load<uint64_t>(bytes_.data() + image_starts_off_ + 8 * k);
}

std::span<const uint8_t> Shard::image_pixels(size_t k) const {
  if (k >= n_images_) fail(origin_, ": image index ", k, " out of range (", n_images_, " images)");
  const size_t B = size_t{image_size_} * image_size_ * image_channels_;
  return bytes_.subspan(image_pixels_off_ + k * B, B);
}

size_t Shard::first_image_at_or_after(uint64_t pos) const {
  size_t lo = 0, hi = n_images_;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (image_start(mid) < pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

uint64_t Shard::doc_offset(size_t d) const {
  if (d > n_docs_) fail(origin_, ": document index ", d, " out of range (", n_docs_, " documents)");
  return load<uint64_t>(bytes_.data() + docs_off_ + 8 * d);
}

void write_shard(const std::string& path, const std::vector<ModalityRange>& modalities,
                 std::span<const uint32_t> tokens, std::span<const uint64_t> doc_offsets, const ShardImages* images) {
  check_modalities(modalities, path);
  const uint32_t vocab = modalities.back().end;
  const uint32_t token_bytes = vocab <= 65536 ? 2 : 4;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= vocab) fail(path, ": token ", i, " = ", tokens[i], " is not below vocab_size ", vocab);
  if (doc_offsets.empty()) fail(path, ": document offsets must hold at least one entry (0)");
  if (doc_offsets[0] != 0) fail(path, ": first document offset must be 0");
  for (size_t d = 1; d < doc_offsets.size(); ++d)
    if (doc_offsets[d] < doc_offsets[d - 1]) fail(path, ": document offsets decrease at document ", d);
  if (doc_offsets.back() != tokens.size()) fail(path, ": last document offset must equal the number of tokens");
  if (images) {
    check_images(path, images->name, images->image_size, images->channels, images->patch, images->starts.size(),
                 tokens.size(), doc_offsets.size() - 1, [&](size_t k) { return images->starts[k]; },
                 [&](uint64_t i) { return tokens[i]; }, [&](size_t d) { return doc_offsets[d]; });
    if (images->pixels.size() != images->starts.size() * images->bytes_per_image())
      fail(path, ": ", images->pixels.size(), " pixel bytes for ", images->starts.size(), " images of ",
           images->bytes_per_image(), " bytes");
  }

  std::vector<uint8_t> head(kHeaderBytes + kEntryBytes * modalities.size(), 0);
  auto put = [&](size_t off, auto v) { std::memcpy(head.data() + off, &v, sizeof v); };
  std::memcpy(head.data(), kMagic, 8);
  put(8, images ? kVersionImages : kVersion);
  put(12, token_bytes);
  put(16, uint64_t{tokens.size()});
  put(24, uint64_t{doc_offsets.size() - 1});
  put(32, static_cast<uint32_t>(modalities.size()));
  put(36, uint32_t{0});
  for (size_t i = 0; i < modalities.size(); ++i) {
    size_t e = kHeaderBytes + kEntryBytes * i;
    std::memcpy(head.data() + e, modalities[i].name.data(), modalities[i].name.size());  // rest stays NUL
    put(e + 32, modalities[i].begin);
    put(e + 36, modalities[i].end);
  }

  io::AtomicWriter w(path);
  w.write(head.data(), head.size());
  if (token_bytes == 4) {
    w.write(tokens.data(), tokens.size_bytes());
  } else {
    // Narrow in bounded chunks so a big shard needs no second full-size buffer.
    std::vector<uint16_t> buf;
    for (size_t i = 0; i < tokens.size(); i += 65536) {
      size_t n = std::min<size_t>(65536, tokens.size() - i);
      buf.assign(tokens.begin() + i, tokens.begin() + i + n);
      w.write(buf.data(), n * 2);
    }
  }
  w.write(doc_offsets.data(), doc_offsets.size_bytes());
  if (images) {
    std::vector<uint8_t> ih(kImageHeadBytes, 0);
    std::memcpy(ih.data(), images->name.data(), images->name.size());
    const uint32_t geo[4] = {images->image_size, images->channels, images->patch, 0};
    std::memcpy(ih.data() + 32, geo, sizeof geo);
    const uint64_t n = images->starts.size();
    std::memcpy(ih.data() + 48, &n, 8);
    w.write(ih.data(), ih.size());
    w.write(images->starts.data(), n * 8);
    w.write(images->pixels.data(), images->pixels.size());
  }
  w.commit();
}

}  // namespace mot::data
