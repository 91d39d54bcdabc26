// Datasets written at test time in the layouts users bring.
#pragma once

#include <filesystem>

#include "data/synthetic_images.h"

namespace iris::test {

// A Kvasir-SEG-like folder: RGB JPEG images with a polyp each, masks saved as JPEG (values near 0
// and 255 plus compression noise).
inline void write_kvasir_like(const std::filesystem::path& root, int64_t n, int64_t h = 60,
                              int64_t w = 80) {
  SyntheticImageOptions o;
  o.cases = n;
  o.height = h;
  o.width = w;
  write_synthetic_image_folder(o, root);
}

}  // namespace iris::test
