#include "mot/data/prepare/prepare_text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "mot/core/error.hpp"

namespace mot::data {
namespace {

constexpr size_t kReadBlock = size_t{64} << 10;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Where to end a range that must stop within buf[0, limit): after the last line end,
// else after the last space, else at the last character boundary.
size_t cut_point(const std::string& buf, size_t limit) {
  const std::string_view w(buf.data(), limit);
  if (size_t p = w.rfind('\n'); p != std::string_view::npos) return p + 1;
  if (size_t p = w.rfind(' '); p != std::string_view::npos) return p + 1;
  size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(buf[cut]) & 0xC0) == 0x80) --cut;
  return cut > 0 ? cut : limit;  // no boundary at all: invalid UTF-8, reported by the caller
}

}  // namespace

size_t utf8_error_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) { len = 3; hi = 0x9F; }  // no UTF-16 surrogates
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }  // nothing above U+10FFFF
    else return i;
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return n;
}

std::string scan_text_file(const std::string& path, std::vector<TextRange>& ranges,
                           const std::function<void(std::string_view)>& on_text) {
  ranges.clear();
  std::ifstream f(path, std::ios::binary);
  if (!f) return cat("cannot open: ", std::strerror(errno));
  std::string buf;
  std::vector<char> block(kReadBlock);
  uint64_t base = 0;  // file offset of buf[0]
  bool eof = false, first = true;
  while (true) {
    while (!eof && buf.size() < kMaxDocBytes) {
      f.read(block.data(), static_cast<std::streamsize>(block.size()));
      const auto got = static_cast<size_t>(f.gcount());
      if (f.bad()) return "read error";
      buf.append(block.data(), got);
      if (got < block.size()) eof = true;
    }
    if (first && buf.rfind("\xEF\xBB\xBF", 0) == 0) {  // a byte-order mark is not text
      buf.erase(0, 3);
      base = 3;
    }
    first = false;
    if (buf.empty()) break;
    // (After a byte-order mark was dropped, buf may hold a little less than a full range.)
    const size_t cut = eof && buf.size() <= kMaxDocBytes ? buf.size() : cut_point(buf, std::min(kMaxDocBytes, buf.size()));
    const std::string_view piece(buf.data(), cut);
    if (piece.find('\0') != std::string_view::npos) return "contains NUL bytes (a binary file?)";
    if (size_t bad = utf8_error_at(piece); bad != piece.size())
      return cat("not UTF-8 text (invalid byte at offset ", base + bad, ")");
    if (!trim(piece).empty()) {
      ranges.push_back({base, cut});
      if (on_text) on_text(piece);
    }
    buf.erase(0, cut);
    base += cut;
  }
  if (ranges.empty()) return "no text (only whitespace)";
  return {};
}

std::string read_text_range(const std::string& path, TextRange r) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open: ", std::strerror(errno));
  std::string s(r.length, '\0');
  f.seekg(static_cast<std::streamoff>(r.offset));
  if (!f.read(s.data(), static_cast<std::streamsize>(r.length)))
    fail(path, ": file changed while preparing (cannot read bytes ", r.offset, "..", r.offset + r.length, ")");
  return s;
}

std::string clean_caption(std::string_view s, std::string* why) {
  if (s.size() > kMaxCaptionBytes) {
    *why = cat("caption longer than ", kMaxCaptionBytes / 1024, " KiB");
    return {};
  }
  if (s.rfind("\xEF\xBB\xBF", 0) == 0) s.remove_prefix(3);
  if (s.find('\0') != std::string_view::npos) {
    *why = "caption contains NUL bytes";
    return {};
  }
  if (size_t bad = utf8_error_at(s); bad != s.size()) {
    *why = cat("caption is not UTF-8 text (invalid byte at offset ", bad, ")");
    return {};
  }
  const std::string_view t = trim(s);
  if (t.empty()) *why = "empty caption";
  return std::string(t);
}

void for_each_sentence(std::string_view text, size_t max_bytes, const std::function<void(std::string_view)>& take) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    while (line.size() > max_bytes) {
      size_t cut = line.substr(0, max_bytes).rfind(' ');
      if (cut == std::string_view::npos || cut == 0) {
        cut = max_bytes;
        while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
        if (cut == 0) cut = max_bytes;
      }
      take(line.substr(0, cut));
      line = trim(line.substr(cut));
    }
    if (!line.empty()) take(line);
  }
}

}  // namespace mot::data
