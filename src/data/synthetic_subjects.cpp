#include "data/synthetic_subjects.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <random>

#include "data/preprocess.h"

namespace iris {
namespace {

struct Pose {
  double rx = 0, ry = 0, rz = 0;  // radians about R, A, S
  std::array<double, 3> shift{};  // mm
  double zoom = 1;
};

// Rotation about x, then y, then z (world axes R, A, S), as a 3x3 row-major matrix.
std::array<double, 9> rotation(double rx, double ry, double rz) {
  const double cx = std::cos(rx), sx = std::sin(rx), cy = std::cos(ry), sy = std::sin(ry),
               cz = std::cos(rz), sz = std::sin(rz);
  // Rz * Ry * Rx
  return {cz * cy,
          cz * sy * sx - sz * cx,
          cz * sy * cx + sz * sx,
          sz * cy,
          sz * sy * sx + cz * cx,
          sz * sy * cx - cz * sx,
          -sy,
          cy * sx,
          cy * cx};
}

at::Generator generator(std::mt19937_64& rng) {
  return at::detail::createCPUGenerator(static_cast<uint64_t>(rng()));
}

// Separable Gaussian blur of [nk, nj, ni] with sigma in voxels.
at::Tensor blur(const at::Tensor& x, double sigma) {
  const int64_t radius = static_cast<int64_t>(std::ceil(2 * sigma));
  const at::Tensor t = at::arange(-radius, radius + 1, at::kFloat);
  const at::Tensor k = (-(t * t) / (2 * sigma * sigma)).exp();
  const at::Tensor kernel = k / k.sum();
  at::Tensor y = x.unsqueeze(0).unsqueeze(0);  // [1, 1, D, H, W]
  y = at::conv3d(y, kernel.view({1, 1, -1, 1, 1}), {}, 1, {radius, 0, 0});
  y = at::conv3d(y, kernel.view({1, 1, 1, -1, 1}), {}, 1, {0, radius, 0});
  y = at::conv3d(y, kernel.view({1, 1, 1, 1, -1}), {}, 1, {0, 0, radius});
  return y.squeeze(0).squeeze(0);
}

// A smooth random field [channels, nk, nj, ni]: N(0, std) on a coarse grid of points
// `spacing_mm` apart, upsampled trilinearly.
at::Tensor smooth_field(std::mt19937_64& rng, int64_t channels, const std::array<int64_t, 3>& shape,
                        double voxel_mm, double spacing_mm, double std) {
  std::vector<int64_t> coarse{1, channels};
  for (int64_t n : shape) {
    coarse.push_back(std::max<int64_t>(
        2, static_cast<int64_t>(std::lround(static_cast<double>(n) * voxel_mm / spacing_mm)) + 1));
  }
  at::Generator g = generator(rng);
  const at::Tensor points = std * at::randn(coarse, g, at::kFloat);
  return at::upsample_trilinear3d(points, {shape[0], shape[1], shape[2]}, /*align_corners=*/true)
      .squeeze(0);
}

Subject warp(const MricronAtlas& atlas, const SubjectOptions& o, std::mt19937_64& rng,
             const Pose& pose, bool deform, bool change_intensity) {
  const Volume& a = atlas.image;
  const Volume grid =
      target_grid(a.affine, {a.nk(), a.nj(), a.ni()}, {o.spacing_mm, o.spacing_mm, o.spacing_mm});
  const int64_t nk = grid.nk(), nj = grid.nj(), ni = grid.ni();
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor i = at::arange(ni, f).view({1, 1, ni}).expand({nk, nj, ni});
  const at::Tensor j = at::arange(nj, f).view({1, nj, 1}).expand({nk, nj, ni});
  const at::Tensor k = at::arange(nk, f).view({nk, 1, 1}).expand({nk, nj, ni});
  const Affine& g = grid.affine;
  std::array<at::Tensor, 3> world;
  for (int r = 0; r < 3; ++r) world[r] = i * g(r, 0) + j * g(r, 1) + k * g(r, 2) + g(r, 3);
  // Centre of the pose: the brain's centroid in world coordinates.
  const at::Tensor brain = (a.data > 0).nonzero().to(at::kDouble);  // [N, 3] (k, j, i)
  const at::Tensor mean = brain.mean(0);
  const auto centre =
      a.affine.apply(mean[2].item<double>(), mean[1].item<double>(), mean[0].item<double>());
  // Source position: inverse pose about the centre, then the displacement.
  const auto rot = rotation(pose.rx, pose.ry, pose.rz);
  std::array<at::Tensor, 3> d, source;
  for (int r = 0; r < 3; ++r) d[r] = world[r] - centre[r] - pose.shift[r];
  for (int r = 0; r < 3; ++r) {
    // R^T (x - c - t) / zoom + c
    source[r] =
        (d[0] * rot[0 * 3 + r] + d[1] * rot[1 * 3 + r] + d[2] * rot[2 * 3 + r]) / pose.zoom +
        centre[r];
  }
  if (deform && o.deformation_mm > 0) {
    const at::Tensor u =
        smooth_field(rng, 3, {nk, nj, ni}, o.spacing_mm, o.control_spacing_mm, o.deformation_mm);
    for (int r = 0; r < 3; ++r) source[r] = source[r] + u[r];
  }
  // Atlas voxel coordinates, then grid_sample's [-1, 1] (align_corners) as (x=i, y=j, z=k).
  const Affine inv = a.affine.inverse();
  const double sizes[3] = {static_cast<double>(a.ni()), static_cast<double>(a.nj()),
                           static_cast<double>(a.nk())};
  std::vector<at::Tensor> normalised;
  for (int c = 0; c < 3; ++c) {
    const at::Tensor v =
        source[0] * inv(c, 0) + source[1] * inv(c, 1) + source[2] * inv(c, 2) + inv(c, 3);
    normalised.push_back(v * (2.0 / (sizes[c] - 1)) - 1.0);
  }
  const at::Tensor sample_grid = at::stack(normalised, -1).unsqueeze(0);  // [1, nk, nj, ni, 3]
  auto sample = [&](const at::Tensor& volume, bool nearest) {
    return at::grid_sampler(volume.to(at::kFloat).unsqueeze(0).unsqueeze(0), sample_grid,
                            nearest ? 1 : 0, 0, true)
        .squeeze(0)
        .squeeze(0);
  };
  Subject s;
  const at::Tensor t1 = sample(a.data, false) / 255.0;
  s.atlas_intensity = t1.contiguous();
  s.source_mm = at::stack({source[0], source[1], source[2]}).contiguous();
  for (const auto& map : atlas.label_maps) {
    Volume v;
    v.data = sample(map.labels.data, true).round().to(at::kLong).contiguous();
    v.affine = grid.affine;
    s.labels[map.name] = std::move(v);
  }
  at::Tensor image = t1;
  const at::Tensor inside = t1 > 1e-3;
  if (change_intensity) {
    std::uniform_real_distribution<double> unit(0, 1);
    std::normal_distribution<double> normal(0, 1);
    const double sigma = unit(rng) * o.blur_voxels;
    if (sigma > 0.2) image = blur(image, sigma);
    image = image.clamp(0, 1).pow(std::exp(o.gamma * normal(rng)));
    if (o.bias > 0) {
      image = image * smooth_field(rng, 1, {nk, nj, ni}, o.spacing_mm, 60.0, o.bias)[0].exp();
    }
    at::Generator gen = generator(rng);
    image = image + o.noise * at::randn({nk, nj, ni}, gen, at::kFloat);
    image = at::where(inside, image.clamp(1e-3, 1), at::zeros_like(image));
  }
  s.image.data = image.contiguous();
  s.image.affine = grid.affine;
  return s;
}

}  // namespace

Subject make_subject(const MricronAtlas& atlas, const SubjectOptions& o, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Pose pose;
  const double deg = M_PI / 180.0;
  pose.rz = u(rng) * o.rotation_degrees * deg;
  pose.rx = u(rng) * o.tilt_degrees * deg;
  pose.ry = u(rng) * o.tilt_degrees * deg;
  for (auto& t : pose.shift) t = u(rng) * o.shift_mm;
  pose.zoom = 1 + u(rng) * o.scale;
  return warp(atlas, o, rng, pose, true, true);
}

Subject pose_atlas(const MricronAtlas& atlas, const SubjectOptions& o, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto sign = [&] { return std::uniform_int_distribution<int>(0, 1)(rng) ? 1.0 : -1.0; };
  Pose pose;
  const double deg = M_PI / 180.0;
  pose.rz = sign() * o.rotation_degrees * deg;
  pose.rx = sign() * o.tilt_degrees * deg;
  pose.ry = sign() * o.tilt_degrees * deg;
  // A shift of o.shift_mm in a random direction.
  std::normal_distribution<double> normal(0, 1);
  double norm = 0;
  for (auto& t : pose.shift) norm += (t = normal(rng)) * t;
  for (auto& t : pose.shift) t *= o.shift_mm / std::sqrt(std::max(norm, 1e-12));
  return warp(atlas, o, rng, pose, false, false);
}

}  // namespace iris
