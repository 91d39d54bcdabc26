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

// Fourier features φ(x) = [sin(π x·ω), cos(π x·ω)] / sqrt(P/2) with ω: [d, P/2] ~ N(0, f²), so
// that φ(x)·φ(y) approximates the Gaussian kernel exp(-π² f² |x - y|² / 2).
// Pooling: masks [B, K, *S] -> Σ_x mask(x) φ(x) / A : [B, K, P], with A the kernel's integral in
// voxels, so that rendering a pooled mask back gives ~1 inside a large structure.
at::Tensor fourier_pool(const at::Tensor& masks, const at::Tensor& frequencies, double frequency_std);
// Rendering: weights [B, K, P] -> φ(x)·w for every voxel of a grid `size` : [B, K, *size].
at::Tensor fourier_render(const at::Tensor& weights, const at::Tensor& frequencies,
                          const std::vector<int64_t>& size);

}  // namespace iris::models
