// Segmentation metrics with stated definitions (docs/metrics.md), following MONAI's conventions
// (`include_background`, `ignore_empty`) so numbers can be checked against it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace iris::eval {

struct MetricOptions {
  bool include_background = true;  // channel 0 is scored too
  // Empty ground truth: true -> NaN (the case is left out of averages, MONAI's default);
  // false -> 1 when the prediction is empty too, else 0.
  bool ignore_empty = true;
};

// pred, truth: [B, C, *spatial] bool (or {0,1}) -> [B, C'] float64, C' = C or C - 1.
at::Tensor dice(const at::Tensor& pred, const at::Tensor& truth, const MetricOptions& o = {});
// |P ∩ G| / |P ∪ G|, the same empty rule.
at::Tensor iou(const at::Tensor& pred, const at::Tensor& truth, const MetricOptions& o = {});
// Mean absolute error per [B, C'] with both inputs in [0, 1] (probabilities or binary masks).
at::Tensor mean_absolute_error(const at::Tensor& pred, const at::Tensor& truth,
                               const MetricOptions& o = {});

// Boundary pixels: foreground pixels with a background 4-neighbour (6 in 3D), the image outside
// counting as background (a pixel on the border of the image is a boundary pixel).
at::Tensor boundary(const at::Tensor& mask);  // [*spatial] bool -> same

// Distances (in `spacing` units, Euclidean) from every boundary pixel of `from` to the nearest
// boundary pixel of `to`. [*spatial] masks; spacing per spatial dim (empty = 1).
at::Tensor surface_distances(const at::Tensor& from, const at::Tensor& to,
                             const std::vector<double>& spacing = {});

// Normalised surface Dice at `tolerance` (spacing units): boundary pixels of each mask within the
// tolerance of the other's boundary, over all boundary pixels. Both empty: NaN; one empty: 0.
// [B, C, *spatial] -> [B, C'].
at::Tensor surface_dice(const at::Tensor& pred, const at::Tensor& truth, double tolerance,
                        const std::vector<double>& spacing = {}, const MetricOptions& o = {});
// Symmetric Hausdorff distance at `percentile` (95 = HD95): the larger of the two directed
// percentiles (linear interpolation). Empty ground truth or prediction: NaN (undefined).
at::Tensor hausdorff_distance(const at::Tensor& pred, const at::Tensor& truth,
                              double percentile = 95.0, const std::vector<double>& spacing = {},
                              const MetricOptions& o = {});

// One score of one (video, frame, class); NaN scores are left out of every mean.
struct FrameScore {
  std::string video;
  int64_t frame = 0;
  std::string cls;
  double value = 0.0;
};

// Frame -> video -> class (macro) aggregation: per (video, class) the mean over frames, per class
// the mean over videos, and the macro mean over classes.
struct Aggregate {
  std::map<std::string, std::map<std::string, double>> per_video_class;  // class -> video -> mean
  std::map<std::string, double> per_class;
  double macro = 0.0;
  int64_t scored = 0;   // scores that entered a mean
  int64_t skipped = 0;  // NaN scores (empty ground truth under ignore_empty)
};
Aggregate aggregate(const std::vector<FrameScore>& scores);

}  // namespace iris::eval
