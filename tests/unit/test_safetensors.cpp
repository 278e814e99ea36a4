// safetensors: writer round trip, layout a standard reader accepts, dtype conversion,
// and every kind of corruption turning into mot::Error (never a crash).
#include <gtest/gtest.h>

#include "test_files.hpp"
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/io/safetensors.hpp"

namespace fs = std::filesystem;
using mot::io::DType;
using mot::io::SafetensorsFile;
using mot::io::TensorToWrite;
using mot::test::Bytes;
using mot::test::slurp;
using mot::test::spit;

namespace {

class SafetensorsTest : public mot::test::TempDirTest {};

// Raw file image: 8-byte length, header text, then `data` bytes.
Bytes image(const std::string& header, const Bytes& data = {}) {
  Bytes b(8);
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

SafetensorsFile parse(const Bytes& b) { return SafetensorsFile::parse(b, "mem"); }

// Parses, and accepts success or mot::Error; anything else (or a crash) fails the test.
void parse_or_error(const Bytes& b) {
  try {
    parse(b);
  } catch (const mot::Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

uint16_t to_bf16(float f) { return static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16); }

// A small valid file as bytes: metadata, an F32 matrix, a BF16 vector.
const float kA[6] = {0, 1, 2, 3, 4, 5};
const uint16_t kB[4] = {to_bf16(1.0f), to_bf16(-2.0f), to_bf16(0.5f), to_bf16(3.0f)};

std::vector<TensorToWrite> sample_tensors() {
  return {{"a", DType::F32, {2, 3}, kA}, {"b.weight", DType::BF16, {4}, kB}};
}

TEST_F(SafetensorsTest, RoundTrip) {
  float scalar = 7.5f;
  auto ts = sample_tensors();
  ts.push_back({"empty", DType::F32, {0, 5}, nullptr});
  ts.push_back({"scalar", DType::F32, {}, &scalar});
  write_safetensors(path("m.safetensors"), ts, {{"format", "mot"}, {"config", "{\"dim\": 8}"}});

  auto f = SafetensorsFile::open(path("m.safetensors"));
  EXPECT_EQ(f.metadata().at("format"), "mot");
  EXPECT_EQ(f.metadata().at("config"), "{\"dim\": 8}");
  ASSERT_EQ(f.tensors().size(), 4u);
  const auto* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::F32);
  EXPECT_EQ(a->dtype_name, "F32");
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->numel(), 6);
  std::vector<float> out(6);
  f.read_f32(*a, out.data());
  EXPECT_EQ(out, std::vector<float>(kA, kA + 6));

  const auto* b = f.find("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::BF16);
  f.read_f32(*b, out.data());
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 4), (std::vector<float>{1, -2, 0.5, 3}));

  const auto* em = f.find("empty");
  ASSERT_NE(em, nullptr);
  EXPECT_EQ(em->numel(), 0);
  EXPECT_EQ(em->nbytes, 0u);
  f.read_f32(*em, out.data());
  const auto* sc = f.find("scalar");
  ASSERT_NE(sc, nullptr);
  EXPECT_TRUE(sc->shape.empty());
  f.read_f32(*sc, out.data());
  EXPECT_EQ(out[0], 7.5f);
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST_F(SafetensorsTest, HeaderLayout) {
  write_safetensors(path("m.safetensors"), sample_tensors(), {{"format", "mot"}});
  Bytes b = slurp(path("m.safetensors"));
  uint64_t n;
  std::memcpy(&n, b.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);  // data section 8-byte aligned
  EXPECT_EQ(b.size(), 8 + n + 6 * 4 + 4 * 2);
  std::string header(b.begin() + 8, b.begin() + 8 + n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"mot\"}", 0), 0u) << header;
  EXPECT_LT(header.find("\"a\""), header.find("\"b.weight\""));  // given order kept
  EXPECT_NE(header.find("\"data_offsets\":[24,32]"), std::string::npos) << header;

  write_safetensors(path("n.safetensors"), sample_tensors(), {});
  Bytes c = slurp(path("n.safetensors"));
  EXPECT_EQ(std::string(c.begin() + 8, c.end()).find("__metadata__"), std::string::npos);
}

// An independent reader (Python: json + numpy, as safetensors itself does) must accept
// the file and see the same values.
TEST_F(SafetensorsTest, PythonReadsOurFiles) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no python3";
  write_safetensors(path("m.safetensors"), sample_tensors(), {{"format", "mot"}});
  std::ofstream(path("check.py")) << R"PY(
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert (8 + n) % 8 == 0
h = json.loads(raw[8:8 + n])
assert h.pop("__metadata__") == {"format": "mot"}
data = raw[8 + n:]
end = 0
for name, t in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, e = t["data_offsets"]
    assert b == end, "tensors must be contiguous"
    end = e
assert end == len(data)
a = np.frombuffer(data, "<f4", 6, h["a"]["data_offsets"][0]).reshape(h["a"]["shape"])
assert h["a"]["dtype"] == "F32" and (a == np.arange(6).reshape(2, 3)).all()
b0, b1 = h["b.weight"]["data_offsets"]
bf = np.frombuffer(data[b0:b1], "<u2").astype(np.uint32) << 16
assert h["b.weight"]["dtype"] == "BF16" and list(bf.view(np.float32)) == [1, -2, 0.5, 3]
print("ok")
)PY";
  std::string cmd = "/usr/bin/python3 " + path("check.py") + " " + path("m.safetensors");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST_F(SafetensorsTest, TruncationAtEveryOffsetIsAnError) {
  write_safetensors(path("m.safetensors"), sample_tensors(), {{"format", "mot"}});
  Bytes b = slurp(path("m.safetensors"));
  parse(b);
  for (size_t len = 0; len < b.size(); ++len)
    EXPECT_THROW(parse(Bytes(b.begin(), b.begin() + len)), mot::Error) << "length " << len;
}

TEST_F(SafetensorsTest, ByteFlipsNeverCrash) {
  write_safetensors(path("m.safetensors"), sample_tensors(), {{"format", "mot"}});
  Bytes b = slurp(path("m.safetensors"));
  for (size_t i = 0; i < b.size(); ++i)
    for (uint8_t x : {0x01, 0x20, 0x80, 0xff}) {
      Bytes c = b;
      c[i] ^= x;
      parse_or_error(c);
    }
}

TEST_F(SafetensorsTest, OpenErrorsNameThePath) {
  for (const std::string& p : {path("missing"), path("empty"), dir_.string()}) {
    if (p == path("empty")) spit(p, {});
    try {
      SafetensorsFile::open(p);
      FAIL() << p;
    } catch (const mot::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(p + ": ", 0), 0u) << e.what();
    }
  }
}

TEST(SafetensorsParse, HeaderLengthChecks) {
  EXPECT_THROW(parse(Bytes(7, 0)), mot::Error);
  EXPECT_THROW(parse(Bytes(8, 0)), mot::Error);  // zero-length header is not JSON
  Bytes b = image("{}");
  parse(b);
  for (uint64_t n : {uint64_t{3}, uint64_t{200} << 20, uint64_t{1} << 63, ~uint64_t{0}}) {
    Bytes c = b;
    std::memcpy(c.data(), &n, 8);
    EXPECT_THROW(parse(c), mot::Error) << n;
  }
}

TEST(SafetensorsParse, CorruptHeadersAreErrors) {
  const Bytes d16(16, 0);
  const std::pair<const char*, std::string> cases[] = {
      {"not json", "hello"},
      {"truncated json", "{\"a\":"},
      {"array", "[]"},
      {"string", "\"x\""},
      {"invalid utf8", "{\"\xff\":1}"},
      {"entry not object", R"({"t":5})"},
      {"missing dtype", R"({"t":{"shape":[1],"data_offsets":[0,4]}})"},
      {"dtype not string", R"({"t":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})"},
      {"empty dtype", R"({"t":{"dtype":"","shape":[1],"data_offsets":[0,4]}})"},
      {"missing shape", R"({"t":{"dtype":"F32","data_offsets":[0,4]}})"},
      {"shape not array", R"({"t":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})"},
      {"negative dim", R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})"},
      {"negative dim with zero", R"({"t":{"dtype":"F32","shape":[0,-1],"data_offsets":[0,0]}})"},
      {"float dim", R"({"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})"},
      {"bool dim", R"({"t":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}})"},
      {"dim > int64", R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}})"},
      {"numel overflow", R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})"},
      {"nbytes overflow", R"({"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})"},
      {"missing offsets", R"({"t":{"dtype":"F32","shape":[1]}})"},
      {"one offset", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})"},
      {"three offsets", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})"},
      {"string offsets", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}})"},
      {"negative offset", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})"},
      {"end before begin", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})"},
      {"size mismatch", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})"},
      {"I64 size mismatch", R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,4]}})"},
      {"outside data", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})"},
      {"huge offsets", R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,18446744073709551615]}})"},
      {"overlap", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"},
      {"same range", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"},
      {"metadata array", R"({"__metadata__":[]})"},
      {"metadata string", R"({"__metadata__":"x"})"},
      {"metadata non-string value", R"({"__metadata__":{"k":1}})"},
  };
  for (const auto& [what, header] : cases) {
    try {
      parse(image(header, d16));
      ADD_FAILURE() << what << ": parsed";
    } catch (const mot::Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind("mem: ", 0), 0u) << what << ": " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << what << ": " << msg;
    }
  }
}

// nlohmann keeps the last of duplicate keys; a name given twice must not silently pick
// one of its entries.
TEST(SafetensorsParse, DuplicateKeysAreErrors) {
  const Bytes d8(8, 0);
  const std::pair<std::string, std::string> cases[] = {
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       "tensor 't' twice"},
      // Same name, one escaped: still the same tensor.
      {R"({"ab":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a\u0062":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       "tensor 'ab' twice"},
      // Identical entries are still ambiguous about the file's intent.
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       "tensor 't' twice"},
      {R"({"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}})", "key '__metadata__'"},
      {R"({"__metadata__":{"format":"mot","format":"x"}})", "key 'format'"},
      {R"({"t":{"dtype":"F32","dtype":"I64","shape":[1],"data_offsets":[0,4]}})", "key 'dtype'"},
      {R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":{"k":1,"k":2}}})", "key 'k'"},
  };
  for (const auto& [header, needle] : cases) {
    try {
      parse(image(header, d8));
      ADD_FAILURE() << header << ": parsed";
    } catch (const mot::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << header << ": " << e.what();
    }
  }
  // The same key in different objects is fine.
  auto f = parse(image(R"({"__metadata__":{"dtype":"x"},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       d8));
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.metadata().at("dtype"), "x");
}

TEST(SafetensorsParse, TextFilesAreNamedAsSuch) {
  for (const std::string text : {"# a config\n[model]\narch = \"mot\"\n", "{\"tokens\": [1, 2, 3]}\n"}) {
    try {
      parse(Bytes(text.begin(), text.end()));
      ADD_FAILURE() << text << ": parsed";
    } catch (const mot::Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a safetensors file (it begins with the text"), std::string::npos)
          << e.what();
    }
  }
}

TEST(SafetensorsParse, ValidOddities) {
  // Trailing space padding, empty tensors anywhere, zero-byte data section, unknown keys.
  Bytes b = image(R"({"e":{"dtype":"F32","shape":[3,0],"data_offsets":[4,4]},)"
                  R"("t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}   )",
                  Bytes(4, 0));
  auto f = parse(b);
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find("e")->numel(), 0);
  parse(image(R"({"e":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]}})"));
  parse(image(R"({"__metadata__":{}})"));
}

TEST(SafetensorsParse, OtherDTypesParseButDoNotConvert) {
  Bytes data(16 + 3 + 2);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  Bytes b = image(R"({"i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                  R"("u":{"dtype":"U8","shape":[3],"data_offsets":[16,19]},)"
                  R"("q":{"dtype":"QX9","shape":[7],"data_offsets":[19,21]}})",
                  data);
  auto f = parse(b);  // parse() does not copy: b must outlive f
  for (const char* name : {"i", "u", "q"}) {
    const auto* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, DType::Other);
    std::vector<float> out(8);
    EXPECT_THROW(f.read_f32(*t, out.data()), mot::Error) << name;
  }
  auto r = f.raw(*f.find("u"));
  EXPECT_EQ(Bytes(r.begin(), r.end()), (Bytes{16, 17, 18}));
  EXPECT_EQ(f.find("q")->dtype_name, "QX9");
}

float read_one(const char* dtype, uint16_t bits) {
  Bytes data(2);
  std::memcpy(data.data(), &bits, 2);
  Bytes b = image(std::string(R"({"x":{"dtype":")") + dtype + R"(","shape":[1],"data_offsets":[0,2]}})", data);
  auto f = parse(b);
  float v;
  f.read_f32(f.tensors()[0], &v);
  return v;
}

TEST(SafetensorsParse, BF16KnownValues) {
  EXPECT_EQ(read_one("BF16", 0x3F80), 1.0f);
  EXPECT_EQ(read_one("BF16", 0xC040), -3.0f);
  EXPECT_EQ(read_one("BF16", 0x4049), 3.140625f);
  EXPECT_EQ(read_one("BF16", 0x0001), std::ldexp(1.0f, -133));  // smallest subnormal
  EXPECT_EQ(read_one("BF16", 0x7F80), INFINITY);
  EXPECT_TRUE(std::isnan(read_one("BF16", 0x7FC0)));
  float nz = read_one("BF16", 0x8000);
  EXPECT_TRUE(nz == 0.0f && std::signbit(nz));
}

TEST(SafetensorsParse, F16KnownValues) {
  EXPECT_EQ(read_one("F16", 0x3C00), 1.0f);
  EXPECT_EQ(read_one("F16", 0xC000), -2.0f);
  EXPECT_EQ(read_one("F16", 0x3555), 0.333251953125f);
  EXPECT_EQ(read_one("F16", 0x7BFF), 65504.0f);
  EXPECT_EQ(read_one("F16", 0x0400), std::ldexp(1.0f, -14));   // smallest normal
  EXPECT_EQ(read_one("F16", 0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(read_one("F16", 0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(read_one("F16", 0x7C00), INFINITY);
  EXPECT_EQ(read_one("F16", 0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(read_one("F16", 0x7E00)));
}

// All 65536 half-precision values against the textbook formula.
TEST(SafetensorsParse, F16ExhaustiveConversion) {
  Bytes data(65536 * 2);
  for (uint32_t i = 0; i < 65536; ++i) {
    uint16_t h = static_cast<uint16_t>(i);
    std::memcpy(&data[2 * i], &h, 2);
  }
  Bytes b = image(R"({"x":{"dtype":"F16","shape":[256,256],"data_offsets":[0,131072]}})", data);
  auto f = parse(b);
  std::vector<float> out(65536);
  f.read_f32(*f.find("x"), out.data());
  for (uint32_t i = 0; i < 65536; ++i) {
    int exp = (i >> 10) & 31, mant = i & 1023;
    double mag = exp == 0    ? std::ldexp(mant, -24)
                 : exp == 31 ? (mant ? NAN : INFINITY)
                             : std::ldexp(1024 + mant, exp - 25);
    double want = (i & 0x8000) ? -mag : mag;
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(out[i])) << i;
    } else {
      ASSERT_EQ(out[i], want) << "bits " << i;
      ASSERT_EQ(std::signbit(out[i]), bool(i & 0x8000)) << i;
    }
  }
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  float x[4] = {};
  using V = std::vector<TensorToWrite>;
  const std::pair<const char*, V> cases[] = {
      {"duplicate", V{{"a", DType::F32, {1}, x}, {"a", DType::F32, {1}, x}}},
      {"reserved name", V{{"__metadata__", DType::F32, {1}, x}}},
      {"other dtype", V{{"a", DType::Other, {1}, x}}},
      {"negative dim", V{{"a", DType::F32, {-1}, x}}},
      {"null data", V{{"a", DType::F32, {2}, nullptr}}},
      {"overflow", V{{"a", DType::F32, {int64_t{1} << 62}, x}}},
      {"bad utf8 name", V{{"\xff", DType::F32, {1}, x}}},
  };
  for (const auto& [what, ts] : cases) {
    EXPECT_THROW(write_safetensors(path("w.safetensors"), ts, {}), mot::Error) << what;
    EXPECT_FALSE(fs::exists(path("w.safetensors"))) << what;
  }
  EXPECT_TRUE(fs::is_empty(dir_));  // no temp files either
}

TEST(SafetensorsParse, ErrorMessagesAreOneLine) {
  for (const std::string& h : {std::string("{\"a\n\":5}"), std::string("{\n\n\x01 junk")}) {
    try {
      parse(image(h));
      FAIL();
    } catch (const mot::Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
}

}  // namespace
