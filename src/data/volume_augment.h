// Augmentation of 3D patch episodes (IRIS patch mode), applied jointly to a patch and its class
// masks: flips along each axis, in-plane quarter turns, intensity scale/shift/gamma and noise.
// Reference and query patches come from different cases, so each gets its own draw. With every
// probability at 0 the augmentation is the identity. Deterministic given the rng.
#pragma once

#include <ATen/core/Tensor.h>

#include <random>

#include "data/episodes.h"

namespace iris {

struct PatchAugmentOptions {
  double flip_probability = 0.5;   // per axis (D, H, W)
  double rot90_probability = 0.0;  // then 1-3 quarter turns in the H-W plane (square patches)
  double intensity_probability = 0.8;
  double scale = 0.1;  // intensity factor uniform in [1 - scale, 1 + scale]
  double shift = 0.1;  // offset uniform in [-shift, shift]
  double gamma = 0.2;  // exponent uniform in [1 - gamma, 1 + gamma] (intensities in [0, 1])
  double noise_std = 0.02;
};

// image: [C, D, H, W] float in [0, 1]; masks: [K, D, H, W]. Returns both transformed (images
// clamped to [0, 1]); masks keep their values.
std::pair<at::Tensor, at::Tensor> augment_patch(const at::Tensor& image, const at::Tensor& masks,
                                                const PatchAugmentOptions& options,
                                                std::mt19937_64& rng);

// The episode with its reference and query patches augmented by independent draws.
PatchEpisode augment_patch_episode(const PatchEpisode& episode, const PatchAugmentOptions& options,
                                   std::mt19937_64& rng);

}  // namespace iris
