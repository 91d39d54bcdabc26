#include "data/synthetic_images.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <cmath>
#include <random>

#include "io/image_io.h"

namespace iris {

int64_t write_synthetic_image_folder(const SyntheticImageOptions& o,
                                     const std::filesystem::path& out) {
  std::filesystem::create_directories(out / "images");
  std::filesystem::create_directories(out / "masks");
  const int64_t h = o.height, w = o.width;
  const at::Tensor y = at::arange(h, at::kFloat).view({h, 1});
  const at::Tensor x = at::arange(w, at::kFloat).view({1, w});
  for (int64_t c = 0; c < o.cases; ++c) {
    std::mt19937_64 rng(o.seed * 1000003ULL + static_cast<uint64_t>(c));
    std::uniform_real_distribution<double> u(0, 1);
    at::Generator g = at::detail::createCPUGenerator(rng());
    // Mucosa: a pink base, smooth blotches, light falling off from a random point, noise.
    const at::Tensor blotches =
        at::upsample_bilinear2d(at::randn({1, 1, 6, 6}, g, at::kFloat), {h, w}, false)[0][0];
    const double ly = u(rng) * h, lx = u(rng) * w;
    const at::Tensor light =
        1.0 - 0.5 * (((y - ly).pow(2) + (x - lx).pow(2)).sqrt() / std::hypot(h, w));
    const double base[3] = {170 + 30 * u(rng), 90 + 25 * u(rng), 80 + 20 * u(rng)};
    // The polyp: an ellipse, tinted redder and brighter at its centre.
    const double cy = h * (0.25 + 0.5 * u(rng)), cx = w * (0.25 + 0.5 * u(rng));
    const double ry = h * (0.1 + 0.15 * u(rng)), rx = w * (0.1 + 0.15 * u(rng));
    const double angle = u(rng) * M_PI, ca = std::cos(angle), sa = std::sin(angle);
    const at::Tensor a = ((y - cy) * ca + (x - cx) * sa) / ry;
    const at::Tensor b = ((x - cx) * ca - (y - cy) * sa) / rx;
    const at::Tensor r2 = a * a + b * b;
    const at::Tensor polyp = r2 <= 1;
    const double tint[3] = {-20 - 30 * u(rng), -40 - 20 * u(rng), -25 - 15 * u(rng)};
    std::vector<at::Tensor> channels;
    for (int ch = 0; ch < 3; ++ch) {
      at::Tensor v = base[ch] + 18 * blotches + tint[ch] * polyp.to(at::kFloat) * (1.3 - 0.5 * r2);
      v = v * light + 6 * at::randn({h, w}, g, at::kFloat);
      channels.push_back(v);
    }
    const at::Tensor image = at::stack(channels, 2).clamp(0, 255).to(at::kByte);
    const std::string id = fmt::format("synth{:04d}", c);
    write_image(out / "images" / (id + ".jpg"), image, o.jpeg_quality);
    write_image(out / "masks" / (id + ".jpg"), polyp.to(at::kByte) * 255, 75);
  }
  return o.cases;
}

}  // namespace iris
