#include "io/volume.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"

namespace iris {

Affine Affine::operator*(const Affine& o) const {
  Affine r;
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += (*this)(i, k) * o(k, j);
      r(i, j) = s;
    }
  }
  return r;
}

Affine Affine::inverse() const {
  // Gauss-Jordan on [A | I] with partial pivoting.
  double a[4][8];
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      a[i][j] = (*this)(i, j);
      a[i][j + 4] = i == j ? 1.0 : 0.0;
    }
  }
  for (int col = 0; col < 4; ++col) {
    int pivot = col;
    for (int r = col + 1; r < 4; ++r) {
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    }
    if (std::abs(a[pivot][col]) < 1e-12) throw InputError("affine is singular and cannot be inverted");
    if (pivot != col) std::swap(a[pivot], a[col]);
    const double p = a[col][col];
    for (double& v : a[col]) v /= p;
    for (int r = 0; r < 4; ++r) {
      if (r == col) continue;
      const double f = a[r][col];
      for (int c = 0; c < 8; ++c) a[r][c] -= f * a[col][c];
    }
  }
  Affine inv;
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) inv(i, j) = a[i][j + 4];
  }
  return inv;
}

std::array<double, 3> Affine::apply(double i, double j, double k) const {
  return {(*this)(0, 0) * i + (*this)(0, 1) * j + (*this)(0, 2) * k + (*this)(0, 3),
          (*this)(1, 0) * i + (*this)(1, 1) * j + (*this)(1, 2) * k + (*this)(1, 3),
          (*this)(2, 0) * i + (*this)(2, 1) * j + (*this)(2, 2) * k + (*this)(2, 3)};
}

std::array<double, 3> Affine::spacing() const {
  std::array<double, 3> s{};
  for (int c = 0; c < 3; ++c) {
    s[c] = std::sqrt((*this)(0, c) * (*this)(0, c) + (*this)(1, c) * (*this)(1, c) +
                     (*this)(2, c) * (*this)(2, c));
  }
  return s;
}

Affine Affine::diagonal(double sx, double sy, double sz) {
  Affine a;
  a(0, 0) = sx;
  a(1, 1) = sy;
  a(2, 2) = sz;
  return a;
}

namespace {

// For voxel axis c: the world axis it mostly points along and the direction's sign. Axes are
// assigned greedily by the largest remaining component, so an oblique affine still maps each
// voxel axis to a distinct world axis.
std::array<std::pair<int, int>, 3> axis_directions(const Affine& affine) {
  std::array<std::pair<int, int>, 3> out{};
  bool world_used[3] = {false, false, false};
  bool voxel_done[3] = {false, false, false};
  for (int round = 0; round < 3; ++round) {
    int best_c = -1, best_w = -1;
    double best = -1;
    for (int c = 0; c < 3; ++c) {
      if (voxel_done[c]) continue;
      for (int w = 0; w < 3; ++w) {
        if (world_used[w]) continue;
        const double v = std::abs(affine(w, c));
        if (v > best) best = v, best_c = c, best_w = w;
      }
    }
    voxel_done[best_c] = true;
    world_used[best_w] = true;
    out[best_c] = {best_w, affine(best_w, best_c) >= 0 ? 1 : -1};
  }
  return out;
}

}  // namespace

std::string nifti_extension(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  for (const std::string ext : {".nii.gz", ".nii"}) {
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) return ext;
  }
  return "";
}

std::string orientation_codes(const Affine& affine) {
  static const char kPositive[] = {'R', 'A', 'S'};
  static const char kNegative[] = {'L', 'P', 'I'};
  std::string codes;
  for (const auto& [world, sign] : axis_directions(affine)) {
    codes += sign > 0 ? kPositive[world] : kNegative[world];
  }
  return codes;
}

Volume reorient_to_ras(const Volume& volume) {
  const auto dirs = axis_directions(volume.affine);
  const int64_t lead = volume.data.dim() - 3;  // 1 for 4D volumes
  // Voxel axis c lives in tensor dim lead + (2 - c).
  at::Tensor data = volume.data;
  const int64_t n[3] = {volume.ni(), volume.nj(), volume.nk()};
  Affine flip;  // old voxel index = flip * (index after flipping)
  for (int c = 0; c < 3; ++c) {
    if (dirs[c].second < 0) {
      data = data.flip({lead + 2 - c});
      flip(c, c) = -1;
      flip(c, 3) = static_cast<double>(n[c] - 1);
    }
  }
  // New voxel axis w takes old axis c with dirs[c].first == w.
  int old_of_new[3];
  for (int c = 0; c < 3; ++c) old_of_new[dirs[c].first] = c;
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < lead; ++d) perm.push_back(d);
  for (int w = 2; w >= 0; --w) perm.push_back(lead + 2 - old_of_new[w]);
  Affine permute;  // old (flipped) index = permute * new index
  for (int r = 0; r < 4; ++r) permute(r, r) = 0;
  permute(3, 3) = 1;
  for (int w = 0; w < 3; ++w) permute(old_of_new[w], w) = 1;
  Volume out = volume;
  out.data = data.permute(perm).contiguous();
  out.affine = volume.affine * flip * permute;
  return out;
}

Volume resample_to(const Volume& moving, const Volume& target, Interpolation interpolation) {
  TORCH_CHECK(moving.data.dim() == 3 && target.data.dim() >= 3,
              "resample_to expects a 3D moving volume, got ", moving.data.sizes());
  // target voxel (i, j, k) -> moving voxel coordinates.
  const Affine m = moving.affine.inverse() * target.affine;
  const auto options = at::TensorOptions().dtype(at::kFloat);
  const int64_t ni = target.ni(), nj = target.nj(), nk = target.nk();
  const auto i = at::arange(ni, options).view({1, 1, ni});
  const auto j = at::arange(nj, options).view({1, nj, 1});
  const auto k = at::arange(nk, options).view({nk, 1, 1});
  const double size[3] = {static_cast<double>(moving.ni()), static_cast<double>(moving.nj()),
                          static_cast<double>(moving.nk())};
  std::vector<at::Tensor> coords;
  for (int r = 0; r < 3; ++r) {
    // grid_sample with align_corners=true maps voxel index x to 2x/(n-1) - 1.
    const double s = size[r] > 1 ? 2.0 / (size[r] - 1) : 0.0;
    at::Tensor c = i * (m(r, 0) * s) + j * (m(r, 1) * s) + k * (m(r, 2) * s) + (m(r, 3) * s - 1.0);
    coords.push_back(c.expand({nk, nj, ni}));
  }
  const auto grid = at::stack(coords, -1).unsqueeze(0);  // [1, nk, nj, ni, 3] as (x=i, y=j, z=k)
  const auto input = moving.data.to(at::kFloat).unsqueeze(0).unsqueeze(0);  // [1, 1, nk, nj, ni]
  const int64_t mode = interpolation == Interpolation::kLinear ? 0 : 1;  // bilinear | nearest
  at::Tensor sampled = at::grid_sampler(input, grid, mode, /*padding_mode=zeros*/ 0,
                                        /*align_corners=*/true)
                           .squeeze(0)
                           .squeeze(0);
  if (!at::isFloatingType(moving.data.scalar_type())) {
    sampled = (interpolation == Interpolation::kNearest ? sampled : sampled.round())
                  .to(moving.data.scalar_type());
  }
  Volume out;
  out.data = sampled.contiguous();
  out.affine = target.affine;
  out.sform_code = target.sform_code;
  out.qform_code = target.qform_code;
  out.source = moving.source;
  return out;
}

}  // namespace iris
