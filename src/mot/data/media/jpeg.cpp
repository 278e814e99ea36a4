#include "mot/data/media/jpeg.hpp"

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "mot/core/error.hpp"

namespace mot::data {
namespace {

// The same bounds read_png() applies: a corrupt header cannot make us allocate gigabytes.
constexpr unsigned kMaxSide = 16384;
constexpr size_t kMaxDecodedBytes = size_t{256} << 20;
constexpr size_t kMaxFileBytes = size_t{256} << 20;

struct ErrorMgr {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// libjpeg cannot return errors, only call error_exit; we jump back to decode().
[[noreturn]] void on_error(j_common_ptr c) {
  auto* e = reinterpret_cast<ErrorMgr*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings (level -1) about corrupt data are normally survived by filling in grey;
// a file that ends early would become a half-grey image, so those two are errors.
void on_message(j_common_ptr c, int level) {
  if (level == -1 && (c->err->msg_code == JWRN_JPEG_EOF || c->err->msg_code == JWRN_HIT_MARKER)) on_error(c);
}

// Decodes into *out. Only plain data lives across setjmp (longjmp skips destructors);
// `out` belongs to the caller. Returns false with the reason in msg.
bool decode(const uint8_t* data, size_t size, int min_side, Image* out, char* msg, size_t msg_size) {
  jpeg_decompress_struct cinfo;
  ErrorMgr err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  err.message[0] = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(msg, msg_size, "corrupt or truncated JPEG: %s", err.message);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.image_width == 0 || cinfo.image_height == 0 || cinfo.image_width > kMaxSide ||
      cinfo.image_height > kMaxSide ||
      size_t{cinfo.image_width} * cinfo.image_height * 3 > kMaxDecodedBytes) {
    std::snprintf(msg, msg_size, "JPEG of %ux%u pixels is too large to decode", cinfo.image_width,
                  cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(msg, msg_size, "CMYK JPEGs are not supported");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  const unsigned short_side = cinfo.image_width < cinfo.image_height ? cinfo.image_width : cinfo.image_height;
  cinfo.scale_num = 1;
  cinfo.scale_denom = 1;
  if (min_side > 0)
    for (unsigned d = 8; d > 1; d /= 2)
      if ((short_side + d - 1) / d >= static_cast<unsigned>(min_side)) {
        cinfo.scale_denom = d;
        break;
      }
  jpeg_start_decompress(&cinfo);
  out->width = static_cast<int>(cinfo.output_width);
  out->height = static_cast<int>(cinfo.output_height);
  out->rgb.assign(size_t{cinfo.output_width} * cinfo.output_height * 3, 0);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->rgb.data() + size_t{cinfo.output_scanline} * cinfo.output_width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

Image read_jpeg(const std::string& path, int min_side) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, ": cannot open JPEG file: ", std::strerror(errno));
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, ": cannot determine the size of the JPEG file");
  if (static_cast<size_t>(size) > kMaxFileBytes) fail(path, ": JPEG file larger than 256 MiB");
  if (size < 4) fail(path, ": not a JPEG file (only ", size, " bytes)");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) fail(path, ": read error on JPEG file");
  if (bytes[0] != 0xFF || bytes[1] != 0xD8) fail(path, ": not a JPEG file (no SOI marker)");
  Image img;
  char msg[JMSG_LENGTH_MAX + 64];
  if (!decode(bytes.data(), bytes.size(), min_side, &img, msg, sizeof msg)) fail(path, ": ", msg);
  return img;
}

}  // namespace mot::data
