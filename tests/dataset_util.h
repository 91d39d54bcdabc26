// Datasets written at test time in the layouts users bring.
#pragma once

#include <filesystem>
#include <string>

#include "io/image_io.h"

namespace iris::test {

// A Kvasir-SEG-like folder: RGB JPEG images with a darker-red "polyp" disc, and masks saved as
// JPEG (values near 0 and 255 plus compression noise).
inline void write_kvasir_like(const std::filesystem::path& root, int64_t n, int64_t h = 60,
                              int64_t w = 80) {
  std::filesystem::create_directories(root / "images");
  std::filesystem::create_directories(root / "masks");
  for (int64_t c = 0; c < n; ++c) {
    torch::manual_seed(c);
    const auto y = torch::arange(h).view({h, 1}).to(torch::kFloat);
    const auto x = torch::arange(w).view({1, w}).to(torch::kFloat);
    const double cy = 20 + 4 * (c % 5), cx = 25 + 6 * (c % 4), r = 10 + c % 3;
    const at::Tensor disc = ((y - cy).pow(2) + (x - cx).pow(2)) < r * r;
    at::Tensor image = torch::stack({150 + 40 * torch::rand({h, w}), 90 + 30 * torch::rand({h, w}),
                                     80 + 20 * torch::rand({h, w})},
                                    2);
    image.index_put_({disc}, torch::tensor({110.0f, 40.0f, 50.0f}));
    const std::string id = "cju" + std::to_string(1000 + c);
    write_image(root / "images" / (id + ".jpg"), image.clamp(0, 255).to(torch::kByte), 90);
    write_image(root / "masks" / (id + ".jpg"), (disc.to(torch::kByte) * 255), 75);
  }
}

}  // namespace iris::test
