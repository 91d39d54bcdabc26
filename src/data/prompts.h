// Prompt simulation from a ground-truth mask, in SAM's conventions, shared by training and
// evaluation so both see prompts drawn by the same rules.
//
// Coordinates are (x, y) pixel indices of the mask's grid (SAM adds the half-pixel shift itself).
// Point labels: 1 positive, 0 negative, -1 padding. Boxes: xyxy with inclusive pixel indices
// (x1 = last column of the object). Rules:
//   point: the first point is the mask pixel farthest from the background (exact Euclidean
//          distance transform; pixels outside the image count as background; ties go to the
//          smallest row-major index), then `positive_points` random mask pixels (distinct, never the
//          first point), then `negative_points` random background pixels inside the tight box
//          dilated by max(negative_margin_min, negative_margin * max(box w, h)) pixels, or anywhere
//          in the image when that region has none.
//   box:   the tight box; with jitter j each coordinate moves by U(-j, j) * box width (x) or height
//          (y), is clamped to the image and kept ordered.
//   mask:  the mask, optionally eroded or dilated by a random radius in [-r, r] (an erosion that
//          would empty it is skipped), plus its low-resolution copy for SAM's mask input.
// An empty mask gives no prompt.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace iris {

enum class PromptType { kPoint, kBox, kMask };

std::string prompt_type_name(PromptType type);  // "point", "box", "mask"
// Accepts the names above; InputError listing them otherwise.
PromptType parse_prompt_type(const std::string& name);

struct PromptOptions {
  int64_t positive_points = 0;      // random positives after the farthest point
  int64_t negative_points = 0;      // random negatives near the object
  double negative_margin = 0.1;     // box dilation for negatives, fraction of the larger box side
  int64_t negative_margin_min = 8;  // ... and at least this many pixels
  double box_jitter = 0.0;          // per-coordinate shift, fraction of the box size
  int64_t mask_perturb_radius = 0;  // random erosion/dilation radius in [-r, r] pixels
  int64_t mask_input_size = 256;    // side of the low-resolution mask input
};

struct Prompt {
  PromptType type = PromptType::kPoint;
  at::Tensor point_coords;  // [N, 2] float xy pixels (point prompts)
  at::Tensor point_labels;  // [N] int32, 1 positive / 0 negative (point prompts)
  at::Tensor box;           // [4] float xyxy pixels (box prompts)
  at::Tensor mask;          // [H, W] uint8 0/1, possibly perturbed (mask prompts)
  at::Tensor mask_input;    // [1, S, S] float in [0, 1], antialiased resize of `mask`
};

// Euclidean distance from every pixel of a [H, W] mask (non-zero = inside) to the nearest outside
// pixel, the image border counting as outside; 0 outside the mask. [H, W] float (exact, not
// squared).
at::Tensor distance_to_background(const at::Tensor& mask);

// (x, y) of the mask pixel farthest from the background; nullopt for an empty mask.
std::optional<std::array<int64_t, 2>> farthest_interior_point(const at::Tensor& mask);

// Tight xyxy box (inclusive pixel indices); nullopt for an empty mask.
std::optional<std::array<int64_t, 4>> tight_box(const at::Tensor& mask);

// One prompt of `type` for a [H, W] mask; nullopt when the mask is empty. The draw depends only on
// the mask, the options and the generator's state.
std::optional<Prompt> simulate_prompt(const at::Tensor& mask, PromptType type,
                                      const PromptOptions& options, std::mt19937_64& rng);

// Point prompts of several objects padded to one length with (0, 0) / -1:
// coords [B, N, 2] float, labels [B, N] int32.
std::pair<at::Tensor, at::Tensor> stack_point_prompts(const std::vector<Prompt>& prompts);

}  // namespace iris
