// Preprocessing and augmentation applied jointly to the frames of a clip, their object masks and
// the prompts' coordinates, so that all three stay aligned. One transform is drawn per clip and
// applied to every frame. With every probability at 0 the augmentation is the identity.
//
// Geometry works in continuous pixel coordinates (pixel i covers [i, i + 1)); a prompt coordinate
// x (a pixel index, SAM's convention) is mapped as x + 0.5 -> transform -> - 0.5. Images are
// resampled bilinearly (antialiased when shrinking), masks by nearest neighbour; pixels that a
// rotation brings in from outside are 0 in images and masks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>

namespace iris {

enum class IntensityMode { kNone, kCtWindow, kMriPercentile };

struct IntensityOptions {
  IntensityMode mode = IntensityMode::kNone;
  double window_center = 40.0;  // CT window in HU (soft tissue by default)
  double window_width = 400.0;
  double low_percentile = 0.5;  // MRI: clip the non-zero voxels to these percentiles
  double high_percentile = 99.5;
};

// Intensities scaled to [0, 1]: CT clipped to [center - width / 2, center + width / 2], MRI clipped
// to percentiles of its non-zero voxels (zeros stay 0). Float of the input's shape.
at::Tensor normalize_intensity(const at::Tensor& image, const IntensityOptions& options);

// [T, H, W, 3] (or [H, W, 3]) uint8 RGB frames -> [T, 3, H, W] float in [0, 1].
at::Tensor frames_to_float(const at::Tensor& frames);

struct AugmentOptions {
  // Output size; 0 keeps the input size. letterbox keeps the aspect ratio and pads (centred) with
  // zeros, otherwise the frame is stretched (SAM2's own square resize).
  int64_t out_height = 0;
  int64_t out_width = 0;
  bool letterbox = true;

  double hflip_probability = 0.0;
  double vflip_probability = 0.0;
  double rot90_probability = 0.0;   // then a uniform quarter turn of 1, 2 or 3 (square outputs)
  double rotate_probability = 0.0;  // small rotation, uniform in [-max_degrees, max_degrees]
  double max_degrees = 15.0;
  double scale_probability = 0.0;  // zoom about the centre, uniform in [scale_min, scale_max]
  double scale_min = 0.8;
  double scale_max = 1.2;
  double color_probability = 0.0;  // factors uniform in [1 - x, 1 + x], applied in this order
  double brightness = 0.2;
  double contrast = 0.2;
  double saturation = 0.2;
};

// The draw of one clip; `affine` maps continuous input-pixel coordinates (after resize) to output
// coordinates: [x', y'] = A[:, :2] [x, y] + A[:, 2].
struct ClipTransform {
  bool hflip = false, vflip = false;
  int64_t quarter_turns = 0;
  double degrees = 0.0, scale = 1.0;
  double brightness = 1.0, contrast = 1.0, saturation = 1.0;
  bool identity_geometry() const {
    return !hflip && !vflip && quarter_turns == 0 && degrees == 0.0 && scale == 1.0;
  }
};

ClipTransform sample_clip_transform(const AugmentOptions& options, std::mt19937_64& rng);

struct ClipTensors {
  at::Tensor images;        // [T, C, H, W] float in [0, 1] (C = 1 or 3)
  at::Tensor masks;         // [T, O, H, W] any dtype, or undefined
  at::Tensor point_coords;  // [O, N, 2] float xy pixel indices, or undefined
  at::Tensor boxes;         // [O, 4] float xyxy inclusive pixel indices, or undefined
};

// Resize or letterbox to the options' output size (no randomness).
ClipTensors resize_clip(const ClipTensors& clip, const AugmentOptions& options);

// Applies a drawn transform (geometry, then colour) to a clip already at its output size. Boxes
// become the bounding box of their transformed corners, clamped to the image.
ClipTensors apply_clip_transform(const ClipTensors& clip, const ClipTransform& transform);

// resize_clip, then sample_clip_transform and apply_clip_transform.
ClipTensors augment_clip(const ClipTensors& clip, const AugmentOptions& options,
                         std::mt19937_64& rng);

}  // namespace iris
