// Token shards: round trips in both token widths, and every way a shard can be
// truncated or corrupt producing mot::Error (never a crash or an out-of-range token).
#include <gtest/gtest.h>

#include "test_files.hpp"
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "mot/core/error.hpp"
#include "mot/data/format/shard.hpp"

namespace fs = std::filesystem;
using mot::data::ModalityRange;
using mot::data::Shard;
using mot::data::write_shard;
using mot::test::Bytes;
using mot::test::slurp;
using mot::test::spit;

namespace {

class ShardTest : public mot::test::TempDirTest {
 protected:
  // A valid 2-byte shard: text [0,100), image [100,300); 10 tokens in 4 documents.
  Bytes sample() {
    std::vector<uint32_t> tokens = {1, 2, 3, 150, 299, 0, 99, 100, 5, 6};
    std::vector<uint64_t> docs = {0, 3, 7, 7, 10};
    write_shard(path("s.bin"), kMods, tokens, docs);
    return slurp(path("s.bin"));
  }

  const std::vector<ModalityRange> kMods = {{"text", 0, 100}, {"image", 100, 300}};
};

Shard parse(const Bytes& b) { return Shard::parse(b, "mem"); }

template <class T>
Bytes patched(Bytes b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
  return b;
}

// Overwrites a 32-byte modality name field with `name`, NUL-padded.
Bytes patched_name(Bytes b, size_t off, const std::string& name) {
  std::memset(b.data() + off, 0, 32);
  std::memcpy(b.data() + off, name.data(), name.size());
  return b;
}

// Layout of sample(): header 40, table 80, tokens at 120 (2 bytes each), docs at 140.
constexpr size_t kTok = 120, kDocs = 140;

TEST_F(ShardTest, RoundTripTwoByteTokens) {
  Bytes b = sample();
  EXPECT_EQ(b.size(), 40u + 2 * 40 + 10 * 2 + 5 * 8);
  Shard s = Shard::open(path("s.bin"));
  EXPECT_EQ(s.origin(), path("s.bin"));
  EXPECT_EQ(s.n_tokens(), 10u);
  EXPECT_EQ(s.n_docs(), 4u);
  EXPECT_EQ(s.vocab_size(), 300u);
  EXPECT_EQ(s.modalities(), kMods);
  EXPECT_EQ(s.token(3), 150u);
  EXPECT_EQ(s.token(4), 299u);
  std::vector<int32_t> out(6);
  s.read_tokens(2, 6, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{3, 150, 299, 0, 99, 100}));
  for (size_t d = 0; d <= 4; ++d) EXPECT_EQ(s.doc_offset(d), (std::vector<uint64_t>{0, 3, 7, 7, 10}[d]));
}

TEST_F(ShardTest, RoundTripFourByteTokens) {
  std::vector<ModalityRange> mods = {{"text", 0, 65536}, {"image_vq", 65536, 70000}};
  std::vector<uint32_t> tokens = {0, 65535, 65536, 69999, 7};
  std::vector<uint64_t> docs = {0, 5};
  write_shard(path("s4.bin"), mods, tokens, docs);
  EXPECT_EQ(fs::file_size(path("s4.bin")), 40u + 80 + 5 * 4 + 2 * 8);
  Shard s = Shard::open(path("s4.bin"));
  EXPECT_EQ(s.vocab_size(), 70000u);
  std::vector<int32_t> out(5);
  s.read_tokens(0, 5, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{0, 65535, 65536, 69999, 7}));
}

TEST_F(ShardTest, VocabOf65536UsesTwoBytes) {
  std::vector<ModalityRange> mods = {{"a", 0, 65536}};
  std::vector<uint32_t> tokens = {65535, 0};
  std::vector<uint64_t> docs = {0, 2};
  write_shard(path("s.bin"), mods, tokens, docs);
  EXPECT_EQ(fs::file_size(path("s.bin")), 40u + 40 + 2 * 2 + 2 * 8);
  EXPECT_EQ(Shard::open(path("s.bin")).token(0), 65535u);
}

TEST_F(ShardTest, EmptyShardAndLongName) {
  std::string name32(32, 'x');
  std::vector<ModalityRange> mods = {{name32, 0, 1}};
  write_shard(path("e.bin"), mods, {}, std::vector<uint64_t>{0});
  Shard s = Shard::open(path("e.bin"));
  EXPECT_EQ(s.n_tokens(), 0u);
  EXPECT_EQ(s.n_docs(), 0u);
  EXPECT_EQ(s.modalities()[0].name, name32);
  s.read_tokens(0, 0, nullptr);
}

TEST_F(ShardTest, TruncationAndTrailingBytesAreErrors) {
  Bytes b = sample();
  parse(b);
  for (size_t len = 0; len < b.size(); ++len)
    EXPECT_THROW(parse(Bytes(b.begin(), b.begin() + len)), mot::Error) << "length " << len;
  b.push_back(0);
  EXPECT_THROW(parse(b), mot::Error);
}

TEST_F(ShardTest, ByteFlipsNeverCrash) {
  Bytes b = sample();
  for (size_t i = 0; i < b.size(); ++i)
    for (uint8_t x : {0x01, 0x02, 0x40, 0x80, 0xff}) {
      Bytes c = b;
      c[i] ^= x;
      try {
        Shard s = parse(c);
        // Whatever still parses must honour the invariants the trainer relies on.
        for (size_t t = 0; t < s.n_tokens(); ++t) ASSERT_LT(s.token(t), s.vocab_size());
        ASSERT_EQ(s.doc_offset(s.n_docs()), s.n_tokens());
      } catch (const mot::Error&) {
      }
    }
}

TEST_F(ShardTest, CorruptFieldsAreErrors) {
  const Bytes b = sample();
  const std::pair<const char*, Bytes> cases[] = {
      {"magic", patched<uint8_t>(b, 0, 'X')},
      {"version", patched<uint32_t>(b, 8, 2)},
      {"token_bytes 3", patched<uint32_t>(b, 12, 3)},
      {"token_bytes 4", patched<uint32_t>(b, 12, 4)},  // then the size no longer matches
      {"token_bytes 0", patched<uint32_t>(b, 12, 0)},
      {"n_tokens + 1", patched<uint64_t>(b, 16, 11)},
      {"n_tokens huge", patched<uint64_t>(b, 16, uint64_t{1} << 63)},
      {"n_tokens max", patched<uint64_t>(b, 16, ~uint64_t{0})},
      {"n_docs huge", patched<uint64_t>(b, 24, uint64_t{1} << 61)},
      {"n_docs max", patched<uint64_t>(b, 24, ~uint64_t{0})},
      {"no modalities", patched<uint32_t>(b, 32, 0)},
      {"too many modalities", patched<uint32_t>(b, 32, 4097)},
      {"one modality fewer", patched<uint32_t>(b, 32, 1)},
      {"reserved", patched<uint32_t>(b, 36, 1)},
      {"uppercase name", patched<uint8_t>(b, 40, 'T')},
      {"digit first", patched<uint8_t>(b, 40, '1')},
      {"dash in name", patched<uint8_t>(b, 41, '-')},
      {"empty name", patched_name(b, 40, "")},
      {"junk after NUL", patched<uint8_t>(b, 40 + 31, 'x')},
      {"duplicate name", patched_name(b, 80, "text")},
      {"first begin 1", patched<uint32_t>(b, 40 + 32, 1)},
      {"empty range", patched<uint32_t>(b, 40 + 36, 0)},
      {"gap", patched<uint32_t>(b, 80 + 32, 101)},
      {"overlap", patched<uint32_t>(b, 80 + 32, 99)},
      {"reversed range", patched<uint32_t>(b, 80 + 36, 50)},
      {"vocab > 2^31", patched<uint32_t>(b, 80 + 36, (uint32_t{1} << 31) + 1)},
      {"token == vocab", patched<uint16_t>(b, kTok + 2 * 9, 300)},
      {"token huge", patched<uint16_t>(b, kTok, 0xffff)},
      {"first doc offset", patched<uint64_t>(b, kDocs, 1)},
      {"decreasing offsets", patched<uint64_t>(b, kDocs + 8 * 2, 2)},
      {"last offset short", patched<uint64_t>(b, kDocs + 8 * 4, 9)},
      {"last offset long", patched<uint64_t>(b, kDocs + 8 * 4, 11)},
  };
  for (const auto& [what, bytes] : cases) {
    try {
      parse(bytes);
      ADD_FAILURE() << what << ": parsed";
    } catch (const mot::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("mem: ", 0), 0u) << what << ": " << e.what();
    }
  }
}

TEST_F(ShardTest, WriterValidatesInput) {
  std::vector<uint32_t> tok = {1, 2, 3};
  auto bad = [&](const char* what, std::vector<ModalityRange> mods, std::vector<uint32_t> t,
                 std::vector<uint64_t> docs) {
    EXPECT_THROW(write_shard(path("w.bin"), mods, t, docs), mot::Error) << what;
  };
  bad("token >= vocab", kMods, {1, 300, 2}, {0, 3});
  bad("no offsets", kMods, tok, {});
  bad("first offset", kMods, tok, {1, 3});
  bad("decreasing", kMods, tok, {0, 2, 1, 3});
  bad("last offset", kMods, tok, {0, 2});
  bad("no modalities", {}, tok, {0, 3});
  bad("bad name", {{"Text", 0, 10}}, tok, {0, 3});
  bad("name too long", {{std::string(33, 'a'), 0, 10}}, tok, {0, 3});
  bad("duplicate", {{"a", 0, 10}, {"a", 10, 20}}, tok, {0, 3});
  bad("gap", {{"a", 0, 10}, {"b", 11, 20}}, tok, {0, 3});
  bad("not from 0", {{"a", 1, 10}}, tok, {0, 3});
  bad("empty range", {{"a", 0, 0}}, {}, {0});
  bad("vocab > 2^31", {{"a", 0, 0x80000001u}}, {}, {0});
  EXPECT_TRUE(fs::is_empty(dir_));  // nothing written, no temp files
}

TEST_F(ShardTest, AccessorsCheckBounds) {
  sample();
  Shard s = Shard::open(path("s.bin"));
  int32_t out[4];
  EXPECT_THROW(s.token(10), mot::Error);
  EXPECT_THROW(s.doc_offset(5), mot::Error);
  EXPECT_THROW(s.read_tokens(8, 3, out), mot::Error);
  EXPECT_THROW(s.read_tokens(~size_t{0}, 2, out), mot::Error);
  s.read_tokens(10, 0, out);
}

TEST_F(ShardTest, OpenErrorsNameThePath) {
  std::ofstream(path("empty")).close();
  for (const std::string& p : {path("missing"), path("empty"), dir_.string()}) {
    try {
      Shard::open(p);
      FAIL() << p;
    } catch (const mot::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(p + ": ", 0), 0u) << e.what();
    }
  }
}

}  // namespace
