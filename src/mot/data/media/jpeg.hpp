// JPEG input through libjpeg(-turbo) (Debian libjpeg62-turbo-dev), for
// `mot data prepare`. Baseline and progressive JPEGs in greyscale, YCbCr or RGB are
// converted to 8-bit RGB; CMYK is refused. EXIF orientation is not applied.
#pragma once
#include <string>

#include "mot/data/media/image.hpp"

namespace mot::data {

// Reads a JPEG file. With min_side > 0 it decodes at the smallest libjpeg scale
// (1/8, 1/4, 1/2 or 1) whose shorter side is still >= min_side: much faster and
// smaller for photos that are then shrunk anyway. A file that ends early (truncated)
// is an error, not an image with a grey bottom. Throws mot::Error naming the path.
Image read_jpeg(const std::string& path, int min_side = 0);

}  // namespace mot::data
