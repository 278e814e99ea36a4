// Text for `mot data prepare`: checking that a file is UTF-8 text, cutting it into
// documents of bounded size (so no file is ever held whole in memory), reading those
// back, and sentences for the tokenizer sample.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mot::data {

constexpr size_t kMaxDocBytes = size_t{1} << 20;     // a text document, at most
constexpr size_t kMaxCaptionBytes = size_t{64} << 10;  // a caption, at most

struct TextRange {
  uint64_t offset = 0, length = 0;
};

// Reads the file once, in blocks: checks it is UTF-8 without NUL bytes (a leading
// byte-order mark is skipped) and cuts it into ranges of at most kMaxDocBytes, ending
// at a line end where possible (else after a space, else at a character boundary);
// whitespace-only ranges are dropped. on_text (may be empty) sees each range's text.
// Returns "" or the reason the file is not usable text.
std::string scan_text_file(const std::string& path, std::vector<TextRange>& ranges,
                           const std::function<void(std::string_view)>& on_text);

// The bytes of a range found by scan_text_file; mot::Error if the file changed.
std::string read_text_range(const std::string& path, TextRange r);

// A caption's text trimmed, or "" with *why set when it is not usable (empty, too
// long, not UTF-8, NUL bytes).
std::string clean_caption(std::string_view s, std::string* why);

// Lines of text for the tokenizer, trimmed, empty ones left out, long ones cut at
// spaces (or character boundaries) into pieces of at most max_bytes.
void for_each_sentence(std::string_view text, size_t max_bytes, const std::function<void(std::string_view)>& take);

// Index of the first byte that breaks UTF-8 (overlong forms, surrogates and code
// points above U+10FFFF included), or s.size() when s is valid.
size_t utf8_error_at(std::string_view s);

}  // namespace mot::data
