// The one preprocessing path of IRIS for volumes and images, shared by training, `iris eval
// iris` and `iris predict iris`:
//   1. reorient to RAS (voxel axes i, j, k point to +x, +y, +z),
//   2. resample to `spacing` mm per axis (linear for images, nearest for labels),
//   3. crop to the foreground (MR/PET/other: non-zero voxels; CT: body above -500 HU), never
//      cutting a labelled voxel,
//   4. intensities by modality: CT clipped to [-990, 500] HU, others clipped at the 2nd and 98th
//      percentiles of their non-zero voxels; then z-scored.
// `Geometry` records every step, and restore_labels maps a label map on the prepared grid back
// onto the file's own grid, orientation and affine.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/volume.h"

namespace iris {

class ConfigVisitor;

enum class Modality { kCT, kMR, kPET, kOther };

// "CT" -> kCT; "MR", "MRI", "T1", "T1w", "T2", "FLAIR", "ADC", ... -> kMR; "PET" -> kPET; else
// kOther (case-insensitive). The names MSD's and nnU-Net's dataset.json use.
Modality parse_modality(const std::string& name);
std::string to_string(Modality modality);

struct PreprocessOptions {
  std::vector<double> spacing;  // mm along R, A, S; empty: keep each volume's own spacing
  bool crop_foreground = true;
  std::vector<double> ct_window{-990, 500};  // HU
  std::vector<double> percentiles{2, 98};    // MR, PET, other
  void visit(ConfigVisitor& v);
};

// Where a prepared volume lies: its grid in world space and the file grid it came from.
struct Geometry {
  std::array<int64_t, 3> source_shape{};  // nk, nj, ni as stored in the file
  Affine source_affine;
  int sform_code = 1, qform_code = 1;
  std::array<int64_t, 3> shape{};  // nk, nj, ni of the prepared grid (RAS, resampled, cropped)
  Affine affine;                   // its voxel -> world transform
};

struct PreparedVolume {
  at::Tensor image;   // [C, D, H, W] float32 (D = nk along S, H = nj along A, W = ni along R)
  at::Tensor labels;  // [D, H, W] int64; undefined when no labels were given
  Geometry geometry;
};

// Exact q-th percentile (0..100) of `values` with linear interpolation between order statistics
// (numpy's default), for tensors of any size.
double percentile(const at::Tensor& values, double q);

// [C, ...] -> float32 normalised per channel as `modality` says (see the top of this file).
at::Tensor normalize_intensity(const at::Tensor& image, Modality modality,
                               const PreprocessOptions& options);

// `image` is 3D [nk, nj, ni] or 4D [C, nk, nj, ni] (channels); `labels`, when given, must be on
// the image's grid (InputError naming the file otherwise).
PreparedVolume prepare_volume(const Volume& image, const Volume* labels, Modality modality,
                              const PreprocessOptions& options);

// The grid prepare_volume resamples onto, before cropping: RAS axes with the volume's direction
// cosines, `spacing` mm, covering the same extent (centres aligned).
Volume target_grid(const Affine& ras_affine, const std::array<int64_t, 3>& ras_shape,
                   const std::vector<double>& spacing);

// 2D images as IRIS sees them: padded square (centred, zeros) and resized to a square side.
struct SquareFrame {
  int64_t h = 0, w = 0, side = 0, top = 0, left = 0;
};
SquareFrame square_frame(int64_t h, int64_t w);
// [N, H, W] -> [N, size, size] float (bilinear, or nearest for labels), padded with `fill`
// (normalised images: their lowest value, so the padding reads as background).
at::Tensor to_square(const at::Tensor& x, const SquareFrame& frame, int64_t size, bool nearest,
                     double fill = 0);
// Logits [N, K, size, size] -> [N, K, H, W] on the original image (bilinear).
at::Tensor from_square(const at::Tensor& logits, const SquareFrame& frame);
// [C, H, W] -> [channels, H, W]: colour averaged to grey, grey repeated to RGB.
at::Tensor with_channels(const at::Tensor& image, int64_t channels, const std::string& source);

// labels [D, H, W] on the prepared grid -> a label volume on the source grid (nearest
// neighbour; 0 outside the prepared grid) with the source affine and form codes.
Volume restore_labels(const at::Tensor& labels, const Geometry& geometry);

}  // namespace iris
