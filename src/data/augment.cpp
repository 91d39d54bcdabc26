#include "data/augment.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "data/episodes.h"

namespace iris {
namespace {

// 2x3 affine [a b tx; c d ty] on continuous pixel coordinates.
using PixelAffine = std::array<double, 6>;

std::array<double, 2> apply(const PixelAffine& m, double x, double y) {
  return {m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]};
}

PixelAffine invert(const PixelAffine& m) {
  const double det = m[0] * m[4] - m[1] * m[3];
  const double a = m[4] / det, b = -m[1] / det, c = -m[3] / det, d = m[0] / det;
  return {a, b, -(a * m[2] + b * m[5]), c, d, -(c * m[2] + d * m[5])};
}

// Flip, quarter turns, rotation and scale about the image centre.
PixelAffine geometry_affine(const ClipTransform& t, int64_t h, int64_t w) {
  double a = t.hflip ? -1 : 1, b = 0, c = 0, d = t.vflip ? -1 : 1;
  // Exact quarter turns (y points down, so +90 degrees turns clockwise on screen).
  static constexpr int kCos[4] = {1, 0, -1, 0};
  static constexpr int kSin[4] = {0, 1, 0, -1};
  const int q = static_cast<int>(((t.quarter_turns % 4) + 4) % 4);
  const double qc = kCos[q], qs = kSin[q];
  const double a1 = qc * a - qs * c, b1 = qc * b - qs * d, c1 = qs * a + qc * c, d1 = qs * b + qc * d;
  const double rad = t.degrees * M_PI / 180.0;
  const double rc = std::cos(rad) * t.scale, rs = std::sin(rad) * t.scale;
  const double a2 = rc * a1 - rs * c1, b2 = rc * b1 - rs * d1, c2 = rs * a1 + rc * c1,
               d2 = rs * b1 + rc * d1;
  const double cx = w / 2.0, cy = h / 2.0;
  return {a2, b2, cx - (a2 * cx + b2 * cy), c2, d2, cy - (c2 * cx + d2 * cy)};
}

// Pixel-index coordinates [..., 2] through an affine on continuous coordinates.
at::Tensor map_points(const at::Tensor& points, const PixelAffine& m) {
  const at::Tensor p = points.to(at::kDouble) + 0.5;
  const at::Tensor x = p.select(-1, 0), y = p.select(-1, 1);
  return (at::stack({m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]}, -1) - 0.5)
      .to(points.scalar_type());
}

// Inclusive xyxy boxes [O, 4]: the pixel extents' corners through the affine, their bounding box,
// clamped to the image.
at::Tensor map_boxes(const at::Tensor& boxes, const PixelAffine& m, int64_t h, int64_t w) {
  const at::Tensor b = boxes.to(at::kDouble).contiguous();
  at::Tensor out = at::empty_like(b);
  const auto* src = b.data_ptr<double>();
  auto* dst = out.data_ptr<double>();
  for (int64_t i = 0; i < b.size(0); ++i) {
    const double x0 = src[4 * i], y0 = src[4 * i + 1], x1 = src[4 * i + 2] + 1,
                 y1 = src[4 * i + 3] + 1;
    double lx = INFINITY, ly = INFINITY, hx = -INFINITY, hy = -INFINITY;
    for (const auto& [x, y] : {std::pair{x0, y0}, {x1, y0}, {x0, y1}, {x1, y1}}) {
      const auto p = apply(m, x, y);
      lx = std::min(lx, p[0]), hx = std::max(hx, p[0]);
      ly = std::min(ly, p[1]), hy = std::max(hy, p[1]);
    }
    dst[4 * i] = std::clamp(lx, 0.0, double(w - 1));
    dst[4 * i + 1] = std::clamp(ly, 0.0, double(h - 1));
    dst[4 * i + 2] = std::clamp(hx - 1, 0.0, double(w - 1));
    dst[4 * i + 3] = std::clamp(hy - 1, 0.0, double(h - 1));
  }
  return out.to(boxes.scalar_type());
}

// Sampling grid [N, H, W, 2] (align_corners=false) of the output pixels' sources.
at::Tensor sampling_grid(const PixelAffine& forward, int64_t n, int64_t h, int64_t w) {
  const PixelAffine inv = invert(forward);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor xs = (at::arange(w, opts) + 0.5).view({1, w}).expand({h, w});
  const at::Tensor ys = (at::arange(h, opts) + 0.5).view({h, 1}).expand({h, w});
  const at::Tensor sx = inv[0] * xs + inv[1] * ys + inv[2];
  const at::Tensor sy = inv[3] * xs + inv[4] * ys + inv[5];
  const at::Tensor grid = at::stack({sx * (2.0 / w) - 1.0, sy * (2.0 / h) - 1.0}, -1);
  return grid.to(at::kFloat).unsqueeze(0).expand({n, h, w, 2});
}

at::Tensor resample(const at::Tensor& x, const at::Tensor& grid, bool nearest) {
  const at::Tensor f = x.to(at::kFloat);
  // mode 0 bilinear / 1 nearest, padding 0 zeros.
  const at::Tensor out =
      at::grid_sampler_2d(f, grid, nearest ? 1 : 0, 0, /*align_corners=*/false);
  return out.to(x.scalar_type());
}

at::Tensor grey(const at::Tensor& images) {  // [T, 3, H, W] -> [T, 1, H, W]
  return (images.select(1, 0) * 0.299 + images.select(1, 1) * 0.587 +
          images.select(1, 2) * 0.114)
      .unsqueeze(1);
}

}  // namespace

at::Tensor normalize_intensity(const at::Tensor& image, const IntensityOptions& options) {
  switch (options.mode) {
    case IntensityMode::kNone:
      return image.to(at::kFloat);
    case IntensityMode::kCtWindow: {
      TORCH_CHECK(options.window_width > 0, "CT window width must be positive, got ",
                  options.window_width);
      const double lo = options.window_center - options.window_width / 2;
      return (image.to(at::kFloat).clamp(lo, lo + options.window_width) - lo) /
             options.window_width;
    }
    case IntensityMode::kMriPercentile:
      return normalize_mri(image, options.low_percentile, options.high_percentile);
  }
  return image.to(at::kFloat);
}

at::Tensor frames_to_float(const at::Tensor& frames) {
  const at::Tensor f = frames.dim() == 3 ? frames.unsqueeze(0) : frames;
  TORCH_CHECK(f.dim() == 4 && f.size(3) == 3, "frames_to_float: expected [T, H, W, 3], got ",
              frames.sizes());
  return f.permute({0, 3, 1, 2}).to(at::kFloat).div(255.0).contiguous();
}

ClipTransform sample_clip_transform(const AugmentOptions& o, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto in = [&](double lo, double hi) { return lo + (hi - lo) * unit(rng); };
  ClipTransform t;
  t.hflip = unit(rng) < o.hflip_probability;
  t.vflip = unit(rng) < o.vflip_probability;
  if (unit(rng) < o.rot90_probability) {
    t.quarter_turns = std::uniform_int_distribution<int64_t>(1, 3)(rng);
  }
  if (unit(rng) < o.rotate_probability) t.degrees = in(-o.max_degrees, o.max_degrees);
  if (unit(rng) < o.scale_probability) t.scale = in(o.scale_min, o.scale_max);
  if (unit(rng) < o.color_probability) {
    t.brightness = in(1 - o.brightness, 1 + o.brightness);
    t.contrast = in(1 - o.contrast, 1 + o.contrast);
    t.saturation = in(1 - o.saturation, 1 + o.saturation);
  }
  return t;
}

ClipTensors resize_clip(const ClipTensors& clip, const AugmentOptions& o) {
  TORCH_CHECK(clip.images.dim() == 4, "resize_clip: expected images [T, C, H, W], got ",
              clip.images.sizes());
  const int64_t h = clip.images.size(2), w = clip.images.size(3);
  const int64_t oh = o.out_height > 0 ? o.out_height : h, ow = o.out_width > 0 ? o.out_width : w;
  if (oh == h && ow == w) return clip;
  int64_t nh = oh, nw = ow;
  if (o.letterbox) {
    const double s = std::min(double(oh) / h, double(ow) / w);
    nh = std::clamp<int64_t>(std::lround(h * s), 1, oh);
    nw = std::clamp<int64_t>(std::lround(w * s), 1, ow);
  }
  const int64_t top = (oh - nh) / 2, left = (ow - nw) / 2;
  const std::vector<int64_t> pad{left, ow - nw - left, top, oh - nh - top};
  ClipTensors out;
  out.images = at::constant_pad_nd(
      at::_upsample_bilinear2d_aa(clip.images.to(at::kFloat), {nh, nw}, /*align_corners=*/false),
      pad, 0.0);
  if (clip.masks.defined()) {
    TORCH_CHECK(clip.masks.dim() == 4 && clip.masks.size(2) == h && clip.masks.size(3) == w,
                "resize_clip: masks ", clip.masks.sizes(), " do not match images ",
                clip.images.sizes());
    out.masks = at::constant_pad_nd(
        at::upsample_nearest2d(clip.masks.to(at::kFloat), {nh, nw}).to(clip.masks.scalar_type()),
        pad, 0);
  }
  const double sx = double(nw) / w, sy = double(nh) / h;
  const PixelAffine m{sx, 0, double(left), 0, sy, double(top)};
  if (clip.point_coords.defined()) out.point_coords = map_points(clip.point_coords, m);
  if (clip.boxes.defined()) out.boxes = map_boxes(clip.boxes, m, oh, ow);
  return out;
}

ClipTensors apply_clip_transform(const ClipTensors& clip, const ClipTransform& t) {
  TORCH_CHECK(clip.images.dim() == 4, "apply_clip_transform: expected images [T, C, H, W], got ",
              clip.images.sizes());
  const int64_t n = clip.images.size(0), h = clip.images.size(2), w = clip.images.size(3);
  ClipTensors out = clip;
  if (!t.identity_geometry()) {
    const PixelAffine m = geometry_affine(t, h, w);
    const at::Tensor grid = sampling_grid(m, n, h, w);
    out.images = resample(clip.images, grid, /*nearest=*/false);
    if (clip.masks.defined()) out.masks = resample(clip.masks, grid, /*nearest=*/true);
    if (clip.point_coords.defined()) out.point_coords = map_points(clip.point_coords, m);
    if (clip.boxes.defined()) out.boxes = map_boxes(clip.boxes, m, h, w);
  }
  if (t.brightness != 1.0 || t.contrast != 1.0 || t.saturation != 1.0) {
    at::Tensor x = out.images.to(at::kFloat) * t.brightness;
    const bool rgb = x.size(1) == 3;
    const at::Tensor mean = (rgb ? grey(x) : x).mean({1, 2, 3}, /*keepdim=*/true);
    x = (x - mean) * t.contrast + mean;
    if (rgb) {
      const at::Tensor g = grey(x);
      x = g + (x - g) * t.saturation;
    }
    out.images = x.clamp(0.0, 1.0);
  }
  return out;
}

ClipTensors augment_clip(const ClipTensors& clip, const AugmentOptions& options,
                         std::mt19937_64& rng) {
  return apply_clip_transform(resize_clip(clip, options), sample_clip_transform(options, rng));
}

}  // namespace iris
