// Position features of the IRIS network: a fixed sine encoding for the deepest features, and
// random Fourier features that turn a reference mask into a fixed-size vector and back into a
// kernel-smoothed mask on any grid of the same frame (the reference prior).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace iris::models {

// Coordinates in [-1, 1] per axis of a grid `size` (spatial sizes, slowest axis first) -> [N, d].
at::Tensor grid_coordinates(const std::vector<int64_t>& size, const at::TensorOptions& options);

// Sine/cosine encoding of the grid's coordinates with `channels` channels -> [N, channels]
// (channels / (2·d) octave frequencies per axis; leftover channels are zero).
at::Tensor sine_position_encoding(const std::vector<int64_t>& size, int64_t channels,
                                  const at::TensorOptions& options);

// The frame of each image's foreground, for a prior that follows the anatomy rather than the grid:
// per axis, the mean and standard deviation (grid coordinates) of the voxels brighter than 5% of
// the image's intensity range (channels averaged). images [B, C, *S] -> [B, 2, d] (row 0: mean,
// row 1: std); an image with (almost) no foreground gets the grid's own frame (0, kGridStd).
// With principal_axes, the frame also turns with the foreground: [B, 2 + d, d], rows 2.. the
// rotation whose column a is the principal axis nearest grid axis a (sign towards it), and row 1
// the spread along those axes; a rotated anatomy then meets the reference in the same
// coordinates too.
inline constexpr double kGridStd = 0.57735026918962573;  // std of a uniform axis on [-1, 1]
at::Tensor foreground_frame(const at::Tensor& images, bool principal_axes = false);

// Grid coordinates moved towards the foreground frame: x + mix·((x - μ)·V·kGridStd/σ - x), per
// batch item (V the frame's rotation, identity for [B, 2, d] frames). frames [B, 2(+d), d], mix [d] (0: the grid, 1: the foreground frame) -> [B, N, d]. A reference
// and a query whose foregrounds differ by a shift and per-axis scale meet in the same coordinates
// at mix 1 (moment matching, as a rigid-free registration of the two fields of view).
at::Tensor frame_coordinates(const std::vector<int64_t>& size, const at::Tensor& frames,
                             const at::Tensor& mix);

// Fourier features φ(x) = [sin(π x·ω), cos(π x·ω)] / sqrt(P/2) with ω: [d, P/2] ~ N(0, f²), so
// that φ(x)·φ(y) approximates the Gaussian kernel exp(-π² f² |x - y|² / 2).
// Pooling: masks [B, K, *S] -> Σ_x mask(x) φ(x) / A : [B, K, P], with A the kernel's integral in
// voxels, so that rendering a pooled mask back gives ~1 inside a large structure.
// coords: [B, N, d] per-item coordinates of the mask's voxels (frame_coordinates); undefined: the
// grid's. With coordinates scaled against the grid, A follows the voxel density they imply.
at::Tensor fourier_pool(const at::Tensor& masks, const at::Tensor& frequencies,
                        double frequency_std, const at::Tensor& coords = {});
// Rendering: weights [B, K, P] -> φ(x)·w for every voxel of a grid `size` : [B, K, *size], at the
// grid's coordinates or at coords [B, N, d].
at::Tensor fourier_render(const at::Tensor& weights, const at::Tensor& frequencies,
                          const std::vector<int64_t>& size, const at::Tensor& coords = {});

}  // namespace iris::models
