#include "models/iris/position.h"

#include <cmath>

namespace iris::models {
namespace {

constexpr int64_t kChunk = 32768;  // voxels per block: bounds the [n, P] feature block in memory

at::Tensor fourier_features(const at::Tensor& coords, const at::Tensor& frequencies) {
  const at::Tensor angles = at::matmul(coords, frequencies) * M_PI;  // [n, P/2]
  return at::cat({angles.sin(), angles.cos()}, 1) / std::sqrt(static_cast<double>(frequencies.size(1)));
}

int64_t volume_of(const std::vector<int64_t>& size) {
  int64_t n = 1;
  for (int64_t s : size) n *= s;
  return n;
}

}  // namespace

at::Tensor grid_coordinates(const std::vector<int64_t>& size, const at::TensorOptions& options) {
  std::vector<at::Tensor> axes;
  for (int64_t s : size) axes.push_back(at::linspace(-1.0, 1.0, s, options));
  std::vector<at::Tensor> grids = at::meshgrid(axes, "ij");
  for (auto& g : grids) g = g.reshape({-1});
  return at::stack(grids, 1);  // [N, d]
}

at::Tensor sine_position_encoding(const std::vector<int64_t>& size, int64_t channels,
                                  const at::TensorOptions& options) {
  const int64_t d = static_cast<int64_t>(size.size());
  const int64_t per_axis = channels / (2 * d);
  const at::Tensor coords = grid_coordinates(size, options);  // [N, d]
  std::vector<at::Tensor> parts;
  if (per_axis > 0) {
    const at::Tensor octaves = at::pow(2.0, at::arange(per_axis, options)) * M_PI;  // [F]
    for (int64_t a = 0; a < d; ++a) {
      const at::Tensor angles = coords.select(1, a).unsqueeze(1) * octaves;  // [N, F]
      parts.push_back(angles.sin());
      parts.push_back(angles.cos());
    }
  }
  const int64_t used = 2 * d * per_axis;
  if (used < channels) parts.push_back(at::zeros({coords.size(0), channels - used}, options));
  return at::cat(parts, 1);
}

at::Tensor fourier_pool(const at::Tensor& masks, const at::Tensor& frequencies, double frequency_std) {
  const int64_t d = frequencies.size(0);
  TORCH_CHECK(masks.dim() == d + 2, "fourier_pool: masks [B, K, *S] with ", d, " spatial dims expected, got ",
              masks.sizes());
  const std::vector<int64_t> size(masks.sizes().begin() + 2, masks.sizes().end());
  const at::Tensor coords = grid_coordinates(size, frequencies.options());
  const at::Tensor flat = masks.reshape({masks.size(0) * masks.size(1), -1}).to(frequencies.scalar_type());
  at::Tensor pooled;
  for (int64_t start = 0; start < coords.size(0); start += kChunk) {
    const int64_t n = std::min(kChunk, coords.size(0) - start);
    const at::Tensor part = at::matmul(flat.narrow(1, start, n),
                                       fourier_features(coords.narrow(0, start, n), frequencies));
    pooled = pooled.defined() ? pooled + part : part;
  }
  // Integral of exp(-π² f² |x|² / 2) over R^d, converted from coordinate units to voxels.
  double area = std::pow(2.0 * M_PI, d / 2.0) / std::pow(M_PI * frequency_std, d);
  for (int64_t s : size) area *= std::max<double>(1.0, (s - 1) / 2.0);
  return (pooled / area).view({masks.size(0), masks.size(1), -1});
}

at::Tensor fourier_render(const at::Tensor& weights, const at::Tensor& frequencies,
                          const std::vector<int64_t>& size) {
  TORCH_CHECK(weights.dim() == 3 && weights.size(2) == 2 * frequencies.size(1),
              "fourier_render: weights [B, K, ", 2 * frequencies.size(1), "] expected, got ", weights.sizes());
  const at::Tensor coords = grid_coordinates(size, frequencies.options());
  const at::Tensor w = weights.reshape({-1, weights.size(2)}).t();  // [P, B·K]
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < coords.size(0); start += kChunk) {
    const int64_t n = std::min(kChunk, coords.size(0) - start);
    parts.push_back(at::matmul(fourier_features(coords.narrow(0, start, n), frequencies), w));  // [n, B·K]
  }
  std::vector<int64_t> shape{weights.size(0), weights.size(1)};
  shape.insert(shape.end(), size.begin(), size.end());
  TORCH_CHECK(volume_of(size) == coords.size(0));
  return at::cat(parts, 0).t().reshape(shape);
}

}  // namespace iris::models
