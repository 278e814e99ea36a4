// Transfusion data (SPEC 2b): version 2 shards with an image section (round trip,
// version 1 unchanged, every corruption an error), rows of whole documents with their
// images' latents, and JSONL rows with explicit images (each bad input one error).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "mot/core/error.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/data/format/shard.hpp"
#include "test_files.hpp"

namespace {

using mot::data::ModalityRange;
using mot::data::Shard;
using mot::data::ShardImages;
using mot::test::Bytes;
using mot::test::slurp;
using mot::test::spit;

constexpr int32_t C = mot::kContinuousEntry;

// text [0, 40), bos 1, boi 2, eoi 3; image: 4x4x3 pixels in 2x2 patches = 4 positions of 12.
mot::ModelConfig model_config(int64_t max_seq_len = 64) {
  mot::ModelConfig c;
  c.arch = "dense";
  c.dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.ffn_hidden = 16;
  c.vocab_size = 40;
  c.max_seq_len = max_seq_len;
  c.bos_id = 1;
  c.doc_mask = true;
  mot::Modality image;
  image.name = "image";
  image.continuous = true;
  image.patch = 2;
  image.channels = 3;
  image.image_size = 4;
  c.modalities = {mot::Modality{"text", 0, 40}, image};
  c.validate("test");
  return c;
}

class TransfusionData : public mot::test::TempDirTest {
 protected:
  // Documents: [1 5 2 I I I I 3 6] [1 7 8] [1 2 I I I I 3 9 10]: two images.
  void write_sample(const std::string& name) {
    tokens = {1, 5, 2, 0, 0, 0, 0, 3, 6, 1, 7, 8, 1, 2, 0, 0, 0, 0, 3, 9, 10};
    docs = {0, 9, 12, 21};
    images = ShardImages{"image", 4, 3, 2, {3, 14}, {}};
    for (int k = 0; k < 2 * 48; ++k) images.pixels.push_back(static_cast<uint8_t>(k * 5 % 256));
    mot::data::write_shard(path(name), kMods, tokens, docs, &images);
  }
  std::vector<uint32_t> tokens;
  std::vector<uint64_t> docs;
  ShardImages images;
  const std::vector<ModalityRange> kMods = {{"text", 0, 40}};

  void expect_corrupt(const Bytes& b, const std::string& what) {
    try {
      Shard::parse(b, "mem");
      ADD_FAILURE() << "accepted a shard with " << what;
    } catch (const mot::Error& e) {
      EXPECT_NE(std::string(e.what()).find("mem:"), std::string::npos) << e.what();
    }
  }
  void write_jsonl(const std::string& text) { spit(path("d.jsonl"), Bytes(text.begin(), text.end())); }
  std::string jsonl_error(const std::string& text) {
    write_jsonl(text);
    try {
      mot::data::read_jsonl_data(path("d.jsonl"), model_config());
    } catch (const mot::Error& e) {
      return e.what();
    }
    return "";
  }
};

// Header 40 + one modality 40 + 21 tokens * 2 + 4 doc offsets * 8 = 154: the image section.
constexpr size_t kImages = 40 + 40 + 21 * 2 + 4 * 8;

TEST_F(TransfusionData, ShardRoundTripMarksImagePositions) {
  write_sample("s.shard");
  const Bytes b = slurp(path("s.shard"));
  ASSERT_EQ(b.size(), kImages + 56 + 2 * 8 + 2 * 48);
  uint32_t version = 0;
  std::memcpy(&version, b.data() + 8, 4);
  EXPECT_EQ(version, 2u);
  const Shard s = Shard::open(path("s.shard"));
  ASSERT_EQ(s.n_images(), 2u);
  EXPECT_EQ(s.image_modality(), "image");
  EXPECT_EQ(s.image_positions(), 4u);
  EXPECT_EQ(s.image_start(1), 14u);
  EXPECT_EQ(s.image_pixels(1)[0], images.pixels[48]);
  EXPECT_EQ(s.first_image_at_or_after(4), 1u);
  // A range that starts inside the first image and ends inside the second.
  std::vector<int32_t> got(13);
  s.read_tokens(5, 13, got.data());
  const std::vector<int32_t> want = {C, C, 3, 6, 1, 7, 8, 1, 2, C, C, C, C};
  EXPECT_EQ(got, want);
}

TEST_F(TransfusionData, VersionOneShardsAreUnchanged) {
  mot::data::write_shard(path("v1.shard"), kMods, std::vector<uint32_t>{1, 2, 3}, std::vector<uint64_t>{0, 3});
  const Bytes b = slurp(path("v1.shard"));
  uint32_t version = 0;
  std::memcpy(&version, b.data() + 8, 4);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(b.size(), 40u + 40 + 3 * 2 + 2 * 8);
  EXPECT_EQ(Shard::open(path("v1.shard")).n_images(), 0u);
}

TEST_F(TransfusionData, CorruptImageSectionsAreErrors) {
  write_sample("s.shard");
  const Bytes b = slurp(path("s.shard"));
  auto patch32 = [&](size_t off, uint32_t v) { Bytes c = b; std::memcpy(c.data() + off, &v, 4); return c; };
  auto patch64 = [&](size_t off, uint64_t v) { Bytes c = b; std::memcpy(c.data() + off, &v, 8); return c; };
  for (size_t cut : {kImages, kImages + 30, b.size() - 1}) expect_corrupt(Bytes(b.begin(), b.begin() + cut), "truncation");
  Bytes longer = b;
  longer.push_back(0);
  expect_corrupt(longer, "trailing data");
  expect_corrupt(patch32(8, 3), "version 3");
  expect_corrupt(patch32(kImages + 32, 5), "an image size that is not a multiple of the patch");
  expect_corrupt(patch32(kImages + 36, 0), "zero channels");
  expect_corrupt(patch32(kImages + 40, 0), "patch 0");
  expect_corrupt(patch32(kImages + 44, 1), "a non-zero reserved field");
  expect_corrupt(patch64(kImages + 48, uint64_t{1} << 62), "an impossible image count");
  expect_corrupt(patch64(kImages + 56, 6), "an image crossing its document's end");
  expect_corrupt(patch64(kImages + 56, 15), "images out of order");
  expect_corrupt(patch64(kImages + 64, 17), "an image not followed by <eoi>");
  Bytes named = b;
  named[kImages] = 'X';
  expect_corrupt(named, "a bad modality name");
  Bytes token = b;
  token[40 + 40 + 4 * 2] = 7;  // token 4 is inside the first image
  expect_corrupt(token, "a non-zero token inside an image");
}

TEST_F(TransfusionData, WriterRejectsBadImages) {
  tokens = {1, 2, 0, 0, 0, 0, 3};
  docs = {0, 7};
  ShardImages im{"image", 4, 3, 2, {2}, std::vector<uint8_t>(47)};
  EXPECT_THROW(mot::data::write_shard(path("w.shard"), kMods, tokens, docs, &im), mot::Error);  // 47 bytes
  im.pixels.resize(48);
  im.starts = {3};  // would end at the document's end
  EXPECT_THROW(mot::data::write_shard(path("w.shard"), kMods, tokens, docs, &im), mot::Error);
  im.starts = {2};
  mot::data::write_shard(path("w.shard"), kMods, tokens, docs, &im);
  EXPECT_EQ(Shard::open(path("w.shard")).n_images(), 1u);
}

TEST_F(TransfusionData, RowsAreWholeDocumentsWithTheirLatents) {
  write_sample("train-000.shard");
  const mot::ModelConfig c = model_config();
  // seq_len 11: rows of at most 12 entries, filled greedily: [doc0 (9) doc1 (3)], [doc2 (9)].
  auto src = mot::data::shard_source({path("train-000.shard")}, c, 11, false, 0);
  ASSERT_EQ(src->n_rows(), 2);
  EXPECT_EQ(src->latent_dim(), 12);
  mot::TokenBatch tb;
  mot::data::fill_batch(*src, 0, 2, tb);
  const std::vector<int32_t> want = {1, 5, 2, C, C, C, C, 3, 6, 1, 7, 8,  //
                                     1, 2, C, C, C, C, 3, 9, 10, -1, -1, -1};
  EXPECT_EQ(tb.tokens, want);
  ASSERT_EQ(tb.latents.size(), 2u * 48);
  EXPECT_EQ(tb.span_t, (std::vector<int32_t>{-1, -1}));
  EXPECT_EQ(tb.noise.size(), tb.latents.size());
  for (size_t k = 0; k < tb.latents.size(); ++k) ASSERT_EQ(tb.latents[k], images.pixels[k] / 127.5f - 1.0f) << k;
  // A document longer than a row is an error naming it, not a cut image.
  EXPECT_THROW(mot::data::shard_source({path("train-000.shard")}, c, 7, false, 0), mot::Error);
}

TEST_F(TransfusionData, ImageShardsNeedAContinuousModelOfTheSameGeometry) {
  write_sample("train-000.shard");
  mot::ModelConfig text_only = model_config();
  text_only.modalities.pop_back();
  text_only.validate("test");
  EXPECT_THROW(mot::data::shard_source({path("train-000.shard")}, text_only, 11, false, 0), mot::Error);
  mot::ModelConfig other = model_config();
  other.modalities[1].patch = 4;
  other.validate("test");
  EXPECT_THROW(mot::data::shard_source({path("train-000.shard")}, other, 11, false, 0), mot::Error);
}

// `vectors` lists of `width` copies of `value`, as JSON.
std::string vectors_json(int vectors, int width, const std::string& value = "0.5") {
  std::string v = "[";
  for (int i = 0; i < vectors; ++i) {
    v += i ? ",[" : "[";
    for (int j = 0; j < width; ++j) v += (j ? "," : "") + value;
    v += "]";
  }
  return v + "]";
}

// A JSONL image: `vectors` latent vectors of `width`, then `extra` keys (τ, noise).
std::string image_json(int vectors, int width, const std::string& extra = "", const std::string& value = "0.5") {
  std::string s = "{\"latents\":" + vectors_json(vectors, width, value);
  if (!extra.empty()) s += "," + extra;
  return s + "}";
}

TEST_F(TransfusionData, JsonlImagesAreRead) {
  const std::string noise = "\"noise\":" + std::string("[[0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25],"
                                                       "[1,1,1,1,1,1,1,1,1,1,1,1],[2,2,2,2,2,2,2,2,2,2,2,2],"
                                                       "[3,3,3,3,3,3,3,3,3,3,3,3]]");
  write_jsonl("{\"tokens\":[1,5,2,-2,-2,-2,-2,3,6],\"images\":[" + image_json(4, 12, noise + ",\"t\":7") + "]}\n" +
              "{\"tokens\":[1,2,-2,-2,-2,-2,3],\"images\":[" + image_json(4, 12) + "]}\n{\"tokens\":[1,4,5]}\n");
  const auto rows = mot::data::read_jsonl_data(path("d.jsonl"), model_config());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].span_t, std::vector<int32_t>{7});
  EXPECT_EQ(rows[0].noise[12], 1.0f);
  EXPECT_EQ(rows[1].span_t, std::vector<int32_t>{-1});
  EXPECT_EQ(rows[1].noise, std::vector<float>(48, 0.0f));
  EXPECT_EQ(rows[1].latents, std::vector<float>(48, 0.5f));
  auto src = mot::data::jsonl_source(path("d.jsonl"), model_config());
  mot::TokenBatch tb;
  mot::data::fill_batch(*src, 0, 3, tb);
  EXPECT_EQ(tb.latents.size(), 96u);
  EXPECT_EQ(tb.span_t, (std::vector<int32_t>{7, -1}));
}

TEST_F(TransfusionData, BadJsonlImagesNameTheProblem) {
  auto expect = [&](const std::string& text, const std::string& needle) {
    const std::string e = jsonl_error(text);
    EXPECT_NE(e.find(needle), std::string::npos) << "error: '" << e << "' lacks '" << needle << "'";
    EXPECT_NE(e.find("d.jsonl:1"), std::string::npos) << e;
  };
  const std::string row = "{\"tokens\":[1,2,-2,-2,-2,-2,3],\"images\":[";
  expect("{\"tokens\":[1,2,-2,-2,-2,3],\"images\":[" + image_json(3, 12) + "]}", "patches per image");
  expect(row + image_json(4, 11) + "]}", "latent width 11");
  expect(row + image_json(3, 12) + "]}", "holds 3 vectors");
  expect(row + image_json(4, 12, "\"t\":1000,\"noise\":" + vectors_json(4, 12)) + "]}",
         "outside [0, 999]");
  expect(row + image_json(4, 12, "\"t\":-1,\"noise\":[]") + "]}", "outside [0, 999]");
  expect(row + image_json(4, 12, "", "NaN") + "]}", "NaN");
  expect(row + image_json(4, 12, "", "1e99") + "]}", "finite");
  expect(row + image_json(4, 12, "\"t\":5") + "]}", "go together");
  expect("{\"tokens\":[1,2,-2,-2,-2,-2],\"images\":[" + image_json(4, 12) + "]}", "ends inside an image span");
  expect("{\"tokens\":[1,2,-2,-2,-2,-2,3]}", "1 image span(s)");
  expect(row + image_json(4, 12, "\"colour\":1") + "]}", "unknown key");
}

}  // namespace
