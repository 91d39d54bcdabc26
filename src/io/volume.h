// A 3D image on a physical grid: voxel data plus the affine that places it in world space.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <string>

namespace iris {

// 4x4 voxel-to-world transform, row-major; world is RAS+ millimetres (NIfTI convention), voxel
// index order (i, j, k) as stored on disk (i fastest).
struct Affine {
  std::array<double, 16> m{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};

  double operator()(int row, int col) const { return m[row * 4 + col]; }
  double& operator()(int row, int col) { return m[row * 4 + col]; }
  Affine operator*(const Affine& other) const;
  Affine inverse() const;  // throws InputError if singular
  std::array<double, 3> apply(double i, double j, double k) const;
  // Column norms of the 3x3 part: the voxel spacing in mm along i, j, k.
  std::array<double, 3> spacing() const;
  static Affine diagonal(double sx, double sy, double sz);
};

struct Volume {
  at::Tensor data;  // [nk, nj, ni] (slowest to fastest on disk), or [nt, nk, nj, ni] for 4D
  Affine affine;
  int sform_code = 1;  // NIFTI_XFORM_* codes kept so written files mean the same
  int qform_code = 1;
  std::string source;  // file it came from, for messages

  int64_t ni() const { return data.size(-1); }
  int64_t nj() const { return data.size(-2); }
  int64_t nk() const { return data.size(-3); }
};

// Three letters, one per voxel axis i, j, k, naming the world direction the axis points to
// (R/L, A/P, S/I), as nibabel's aff2axcodes does: "RAS", "LAS", ...
std::string orientation_codes(const Affine& affine);

// Flips and permutes the voxel axes so the affine is RAS (each axis points to +x, +y, +z in
// order); the world position of every voxel is unchanged.
Volume reorient_to_ras(const Volume& volume);

// ".nii.gz" or ".nii" when `path` names a NIfTI file, else "".
std::string nifti_extension(const std::string& path);

enum class Interpolation { kLinear, kNearest };

// Resamples `moving` onto the grid of `target` (its shape and affine) through both affines:
// target voxel -> world -> moving voxel. kLinear for intensities, kNearest for label maps;
// outside the moving volume the result is 0. The result has target's geometry and moving's
// dtype (labels stay integers).
Volume resample_to(const Volume& moving, const Volume& target, Interpolation interpolation);

}  // namespace iris
