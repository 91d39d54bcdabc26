#include "models/iris/position.h"

#include <cmath>

namespace iris::models {
namespace {

constexpr int64_t kChunk = 32768;  // voxels per block: bounds the [n, P] feature block in memory

at::Tensor fourier_features(const at::Tensor& coords, const at::Tensor& frequencies) {
  const at::Tensor angles = at::matmul(coords, frequencies) * M_PI;  // [n, P/2]
  return at::cat({angles.sin(), angles.cos()}, -1) /
         std::sqrt(static_cast<double>(frequencies.size(1)));
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

at::Tensor foreground_frame(const at::Tensor& images, bool principal_axes) {
  TORCH_CHECK(images.dim() >= 3, "foreground_frame: images [B, C, *S] expected, got ",
              images.sizes());
  const torch::NoGradGuard no_grad;
  const std::vector<int64_t> size(images.sizes().begin() + 2, images.sizes().end());
  const int64_t b = images.size(0), d = static_cast<int64_t>(size.size());
  const at::Tensor value = images.detach().to(at::kFloat).mean(1).reshape({b, -1});  // [B, N]
  const at::Tensor low = std::get<0>(value.min(1, /*keepdim=*/true));
  const at::Tensor high = std::get<0>(value.max(1, /*keepdim=*/true));
  const at::Tensor weight = (value > low + 0.05 * (high - low)).to(at::kFloat);  // [B, N]
  const at::Tensor count = weight.sum(1, /*keepdim=*/true);                      // [B, 1]
  const at::Tensor coords = grid_coordinates(size, value.options());             // [N, d]
  const at::Tensor mean = at::matmul(weight, coords) / count.clamp_min(1);       // [B, d]
  // Too little foreground for stable moments: keep the grid's frame.
  const at::Tensor usable =
      count >= std::max<double>(8.0, 0.01 * static_cast<double>(value.size(1)));
  if (!principal_axes) {
    const at::Tensor var = at::matmul(weight, coords * coords) / count.clamp_min(1) - mean * mean;
    const at::Tensor std = var.clamp_min(0.05 * 0.05).sqrt();
    return at::stack({at::where(usable, mean, at::zeros_like(mean)),
                      at::where(usable, std, at::full_like(std, kGridStd))},
                     1)
        .view({b, 2, d});
  }
  // Covariance [B, d, d] of the foreground coordinates, in double for the eigenvectors.
  const at::Tensor w = weight.to(at::kDouble), x = coords.to(at::kDouble);
  const at::Tensor m = mean.to(at::kDouble);
  const at::Tensor second = at::einsum("bn,ni,nj->bij", {w, x, x}) /
                            count.to(at::kDouble).clamp_min(1).unsqueeze(2);
  const at::Tensor covariance = second - m.unsqueeze(2) * m.unsqueeze(1);
  const auto [eigenvalues, eigenvectors] = at::linalg_eigh(covariance);  // ascending, columns
  at::Tensor out = at::zeros({b, 2 + d, d}, at::kDouble);
  for (int64_t item = 0; item < b; ++item) {
    if (!usable[item].item<bool>()) {
      out[item][1].fill_(kGridStd);
      out[item].narrow(0, 2, d).copy_(at::eye(d, at::kDouble));
      continue;
    }
    out[item][0].copy_(m[item]);
    // Each grid axis takes the principal axis most aligned with it (greedy, largest first).
    const at::Tensor v = eigenvectors[item];  // [d, d], column c = axis c
    std::vector<bool> axis_used(d, false), column_used(d, false);
    for (int64_t round = 0; round < d; ++round) {
      int64_t best_axis = -1, best_column = -1;
      double best = -1;
      for (int64_t a = 0; a < d; ++a) {
        if (axis_used[a]) continue;
        for (int64_t c = 0; c < d; ++c) {
          if (column_used[c]) continue;
          const double value_ac = std::abs(v[a][c].item<double>());
          if (value_ac > best) best = value_ac, best_axis = a, best_column = c;
        }
      }
      axis_used[best_axis] = column_used[best_column] = true;
      const double sign = v[best_axis][best_column].item<double>() >= 0 ? 1.0 : -1.0;
      out[item].narrow(0, 2, d).select(1, best_axis).copy_(v.select(1, best_column) * sign);
      out[item][1][best_axis] =
          std::sqrt(std::max(eigenvalues[item][best_column].item<double>(), 0.05 * 0.05));
    }
  }
  return out.to(at::kFloat);
}

at::Tensor frame_coordinates(const std::vector<int64_t>& size, const at::Tensor& frames,
                             const at::Tensor& mix) {
  const int64_t d = static_cast<int64_t>(size.size());
  TORCH_CHECK(frames.dim() == 3 && (frames.size(1) == 2 || frames.size(1) == 2 + d) &&
                  frames.size(2) == d,
              "frame_coordinates: frames [B, 2 (+", d, "), ", d, "] expected, got ",
              frames.sizes());
  TORCH_CHECK(mix.numel() == d, "frame_coordinates: mix of ", d, " values expected, got ",
              mix.sizes());
  const at::Tensor grid = grid_coordinates(size, mix.options()).unsqueeze(0);      // [1, N, d]
  const at::Tensor mean = frames.select(1, 0).to(mix.scalar_type()).unsqueeze(1);  // [B, 1, d]
  const at::Tensor std = frames.select(1, 1).to(mix.scalar_type()).unsqueeze(1);
  at::Tensor centred = grid - mean;  // [B, N, d]
  if (frames.size(1) == 2 + d) {
    // Coordinates along the principal axes: (x - μ)·V.
    centred = at::matmul(centred, frames.narrow(1, 2, d).to(mix.scalar_type()));
  }
  const at::Tensor framed = centred * (kGridStd / std);
  return grid + mix.view({1, 1, d}) * (framed - grid);  // [B, N, d]
}

namespace {

// Coordinates of `chunk` voxels from `start`: the grid's [n, d] or the items' [B, n, d].
at::Tensor coords_chunk(const at::Tensor& grid, const at::Tensor& coords, int64_t start,
                        int64_t n) {
  return coords.defined() ? coords.narrow(1, start, n) : grid.narrow(0, start, n);
}

int64_t chunk_for(const at::Tensor& coords) {
  return coords.defined() ? std::max<int64_t>(1024, kChunk / coords.size(0)) : kChunk;
}

void check_coords(const at::Tensor& coords, int64_t batch, int64_t voxels, int64_t d,
                  const char* who) {
  if (!coords.defined()) return;
  TORCH_CHECK(coords.dim() == 3 && coords.size(0) == batch && coords.size(1) == voxels &&
                  coords.size(2) == d,
              who, ": coords [", batch, ", ", voxels, ", ", d, "] expected, got ", coords.sizes());
}

}  // namespace

at::Tensor fourier_pool(const at::Tensor& masks, const at::Tensor& frequencies,
                        double frequency_std, const at::Tensor& coords) {
  const int64_t d = frequencies.size(0);
  TORCH_CHECK(masks.dim() == d + 2, "fourier_pool: masks [B, K, *S] with ", d,
              " spatial dims expected, got ", masks.sizes());
  const std::vector<int64_t> size(masks.sizes().begin() + 2, masks.sizes().end());
  const int64_t b = masks.size(0), k = masks.size(1), voxels = volume_of(size);
  check_coords(coords, b, voxels, d, "fourier_pool");
  const at::Tensor grid =
      coords.defined() ? at::Tensor() : grid_coordinates(size, frequencies.options());
  const at::Tensor flat = masks.reshape({b, k, voxels}).to(frequencies.scalar_type());
  const int64_t chunk = chunk_for(coords);
  at::Tensor pooled;
  for (int64_t start = 0; start < voxels; start += chunk) {
    const int64_t n = std::min(chunk, voxels - start);
    const at::Tensor part =
        at::matmul(flat.narrow(2, start, n),
                   fourier_features(coords_chunk(grid, coords, start, n), frequencies));
    pooled = pooled.defined() ? pooled + part : part;  // [B, K, P]
  }
  // Integral of exp(-π² f² |x|² / 2) over R^d, converted from coordinate units to voxels: per axis,
  // voxels per coordinate unit, (s - 1) / 2 on the grid, divided by how much coords stretch it.
  const double area = std::pow(2.0 * M_PI, d / 2.0) / std::pow(M_PI * frequency_std, d);
  at::Tensor voxels_per_area = at::ones({b}, frequencies.options());
  for (int64_t a = 0; a < d; ++a) {
    const int64_t s = size[static_cast<std::size_t>(a)];
    if (s < 2) continue;
    const double grid_density = (s - 1) / 2.0;
    if (coords.defined()) {
      const at::Tensor stretch =
          (coords.select(2, a).select(1, voxels - 1) - coords.select(2, a).select(1, 0)) / 2.0;
      voxels_per_area = voxels_per_area * grid_density /
                        stretch.abs().clamp_min(1e-6).to(frequencies.scalar_type());
    } else {
      voxels_per_area = voxels_per_area * grid_density;
    }
  }
  return pooled / (area * voxels_per_area).view({b, 1, 1});
}

at::Tensor fourier_render(const at::Tensor& weights, const at::Tensor& frequencies,
                          const std::vector<int64_t>& size, const at::Tensor& coords) {
  TORCH_CHECK(weights.dim() == 3 && weights.size(2) == 2 * frequencies.size(1),
              "fourier_render: weights [B, K, ", 2 * frequencies.size(1), "] expected, got ",
              weights.sizes());
  const int64_t b = weights.size(0), voxels = volume_of(size);
  check_coords(coords, b, voxels, frequencies.size(0), "fourier_render");
  const at::Tensor grid =
      coords.defined() ? at::Tensor() : grid_coordinates(size, frequencies.options());
  const at::Tensor w = weights.transpose(1, 2);  // [B, P, K]
  const int64_t chunk = chunk_for(coords);
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < voxels; start += chunk) {
    const int64_t n = std::min(chunk, voxels - start);
    parts.push_back(at::matmul(fourier_features(coords_chunk(grid, coords, start, n), frequencies),
                               w));  // [B, n, K]
  }
  std::vector<int64_t> shape{b, weights.size(1)};
  shape.insert(shape.end(), size.begin(), size.end());
  return at::cat(parts, 1).transpose(1, 2).reshape(shape);
}

}  // namespace iris::models
