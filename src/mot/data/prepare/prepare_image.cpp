#include "mot/data/prepare/prepare_image.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <new>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "mot/core/error.hpp"
#include "mot/data/media/jpeg.hpp"
#include "mot/data/prepare/prepare.hpp"
#include "mot/data/prepare/prepare_progress.hpp"
#include "mot/data/tokenize/text_tokenizer.hpp"

namespace mot::data {
namespace {

constexpr size_t kSamplePixelBytes = size_t{64} << 20;  // decoded sample images, at most
constexpr size_t kMaxPatches = 400000;                  // k-means points, as `mot data synth`
constexpr size_t kDecodeBlock = 64;                     // files decoded per parallel block

// One source pixel's share of an output pixel.
struct Tap {
  int src;
  float w;
};

// Box-filter taps mapping n source pixels onto m output pixels: output o covers the
// source interval [o*n/m, (o+1)*n/m); weights are the overlaps, normalised to sum 1.
std::vector<std::vector<Tap>> box_taps(int n, int m) {
  std::vector<std::vector<Tap>> taps(m);
  const double scale = static_cast<double>(n) / m;
  for (int o = 0; o < m; ++o) {
    const double a = o * scale, b = (o + 1) * scale;
    for (int s = static_cast<int>(std::floor(a)); s < std::min(n, static_cast<int>(std::ceil(b))); ++s) {
      const double w = std::min(b, s + 1.0) - std::max(a, static_cast<double>(s));
      if (w > 1e-12) taps[o].push_back({s, static_cast<float>(w / (b - a))});
    }
  }
  return taps;
}

// "PATH: reason" -> "reason": summary.json lists the file separately, by its input path.
std::string reason_of(const std::exception& e, const std::string& path) {
  std::string s = e.what();
  if (s.rfind(path + ": ", 0) == 0) s.erase(0, path.size() + 2);
  return s;
}

// Decodes and fits one file; the error text instead when it is unusable. Never throws
// (it runs inside OpenMP loops, which must not let exceptions out).
std::string load_fitted(const std::string& path, int side, Image& out) {
  try {
    out = fit_square(read_image_file(path, side), side);
    return {};
  } catch (const std::bad_alloc&) {
    return "out of memory while decoding";
  } catch (const std::exception& e) {
    return reason_of(e, path);
  }
}

}  // namespace

Image read_image_file(const std::string& path, int min_side) {
  unsigned char magic[8] = {0};
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(path, ": cannot open image file");
    f.read(reinterpret_cast<char*>(magic), sizeof magic);
  }
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (std::equal(magic, magic + 8, kPng)) return read_png(path);
  if (magic[0] == 0xFF && magic[1] == 0xD8) return read_jpeg(path, min_side);
  fail(path, ": not a PNG or JPEG file (unrecognised signature)");
}

Image fit_square(const Image& img, int side) {
  if (img.width <= 0 || img.height <= 0 || side <= 0) fail("fit_square: empty image or size");
  const int m = std::min(img.width, img.height);
  const int x0 = (img.width - m) / 2, y0 = (img.height - m) / 2;
  const auto taps = box_taps(m, side);  // the same taps serve both axes of the square
  // Row by row (memory O(side), whatever the source size): an output row is the
  // weighted sum of its source rows, each resampled horizontally first.
  std::vector<float> hrow(static_cast<size_t>(side) * 3), acc(static_cast<size_t>(side) * 3);
  Image out(side, side);
  for (int o = 0; o < side; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (const Tap& v : taps[o]) {
      const uint8_t* src = img.at(x0, y0 + v.src);
      std::fill(hrow.begin(), hrow.end(), 0.0f);
      for (int x = 0; x < side; ++x)
        for (const Tap& h : taps[x])
          for (int c = 0; c < 3; ++c) hrow[x * 3 + c] += h.w * src[h.src * 3 + c];
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += v.w * hrow[i];
    }
    uint8_t* dst = out.at(0, o);
    for (size_t i = 0; i < acc.size(); ++i) dst[i] = static_cast<uint8_t>(std::clamp(std::lround(acc[i]), 0L, 255L));
  }
  return out;
}

ImageKind::ImageKind(const PrepareOptions& o)
    : size_(o.image_size), patch_(o.patch), codebook_(o.codebook), iters_(o.vq_iters), sample_(o.vq_sample),
      seed_(o.seed) {}

std::pair<int, int> ImageKind::markers(const TextTokenizer& tok) const { return {tok.boi_id(), tok.eoi_id()}; }

std::vector<std::pair<size_t, std::string>> ImageKind::train(const std::vector<std::string>& paths, bool quiet) {
  const size_t per_image = static_cast<size_t>(size_) * size_ * 3;
  const size_t cap = std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(sample_), kSamplePixelBytes / per_image));
  std::vector<Image> images;
  std::vector<std::pair<size_t, std::string>> failures;
  Progress progress("decoding sample images", std::min(cap, paths.size()), 0, quiet);
  for (size_t next = 0; next < paths.size() && images.size() < cap; next += kDecodeBlock) {
    const size_t n = std::min(kDecodeBlock, paths.size() - next);
    std::vector<Image> got(n);
    std::vector<std::string> err(n);
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < n; ++i) err[i] = load_fitted(paths[next + i], size_, got[i]);
    for (size_t i = 0; i < n; ++i) {
      if (!err[i].empty()) {
        failures.emplace_back(next + i, err[i]);
      } else if (images.size() < cap) {
        images.push_back(std::move(got[i]));
        progress.advance(1, 0);
      }
    }
  }
  progress.finish();
  if (images.empty()) return failures;  // every file broken: the kind drops out, nothing to learn
  const size_t patches = images.size() * static_cast<size_t>(size_ / patch_) * (size_ / patch_);
  if (patches < static_cast<size_t>(codebook_))
    fail("the ", images.size(), " usable sample images give ", patches, " patches, too few for a codebook of ",
         codebook_, " entries (lower --codebook, or reuse tokenizers with --tokenizers)");
  const bool tty = isatty(2);
  vq_ = VqCodebook::train(images, patch_, codebook_, seed_, iters_, kMaxPatches, [&](int it, int n, double dist) {
    if (!quiet)
      std::fprintf(stderr, tty ? "\rprepare: k-means iteration %d/%d, distortion %.5f"
                               : "prepare: k-means iteration %d/%d, distortion %.5f\n",
                   it, n, dist);
  });
  if (!quiet && tty) std::fprintf(stderr, "\n");
  sampled_ = images.size();
  return failures;
}

void ImageKind::load(const std::string& dir, const nlohmann::json& vocab) {
  vq_ = VqCodebook::load(dir + "/vq.safetensors");
  const auto& s = vocab.find("image_size");
  if (s == vocab.end() || !s->is_number_integer()) fail(dir, "/vocab.json: no integer 'image_size'");
  size_ = s->get<int>();
  if (size_ < vq_.patch || size_ > 512 || size_ % vq_.patch)
    fail(dir, "/vocab.json: image_size ", size_, " does not fit the codebook's ", vq_.patch, "-pixel patches");
  patch_ = vq_.patch;
  codebook_ = vq_.K;
}

void ImageKind::save(const std::string& dir) const { vq_.save(dir + "/vq.safetensors"); }

void ImageKind::describe(nlohmann::json& vocab) const {
  vocab["image_size"] = size_;
  vocab["patch"] = vq_.patch;
  vocab["tokens_per_image"] = (size_ / vq_.patch) * (size_ / vq_.patch);
}

std::vector<Encoded> ImageKind::encode(const std::vector<std::string>& paths) {
  const size_t n = paths.size();
  std::vector<Encoded> out(n);
  std::vector<Image> imgs(n);
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < n; ++i) out[i].error = load_fitted(paths[i], size_, imgs[i]);
  std::vector<Image> ok;
  std::vector<size_t> where;
  for (size_t i = 0; i < n; ++i)
    if (out[i].error.empty()) {
      ok.push_back(std::move(imgs[i]));
      where.push_back(i);
    }
  const size_t per = static_cast<size_t>(size_ / vq_.patch) * (size_ / vq_.patch);
  std::vector<uint32_t> codes(ok.size() * per);
  vq_.encode_batch(ok, codes.data());
  std::vector<double> quality(ok.size());
#pragma omp parallel for schedule(static)
  for (size_t k = 0; k < ok.size(); ++k)  // a perfect reconstruction counts 100 dB, as reconstruction_psnr()
    quality[k] = std::min(100.0, psnr(ok[k], vq_.decode(codes.data() + k * per, size_, size_)));
  for (size_t k = 0; k < ok.size(); ++k) {
    out[where[k]].codes.assign(codes.begin() + k * per, codes.begin() + (k + 1) * per);
    psnr_sum_ += quality[k];  // in input order: the mean is the same bytes every run
    ++psnr_n_;
  }
  return out;
}

void ImageKind::report(nlohmann::json& summary) const {
  summary["vq_psnr_db"] = psnr_n_ ? psnr_sum_ / static_cast<double>(psnr_n_) : 0.0;
  summary["vq_sample_images"] = sampled_;
}

}  // namespace mot::data
