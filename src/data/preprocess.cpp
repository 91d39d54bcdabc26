#include "data/preprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>

#include "core/config.h"
#include "core/error.h"

namespace iris {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A body voxel of a CT scan: above -500 HU (air is about -1000, fat -100).
constexpr double kCtBodyHu = -500;

// The largest prepared grid (about 4 GB of float32 per channel).
constexpr int64_t kMaxPreparedVoxels = int64_t{1} << 30;

// Voxels of tolerance at the edges of the prepared grid when mapping back.
constexpr double kEdge = 1e-4;

// Spacings equal to this tolerance (mm) are not resampled.
constexpr double kSpacingTolerance = 1e-4;

bool same_spacing(const std::array<double, 3>& a, const std::vector<double>& b) {
  for (int d = 0; d < 3; ++d) {
    if (std::abs(a[d] - b[d]) > kSpacingTolerance) return false;
  }
  return true;
}

// Bounding box [begin, end) per tensor dim of the non-zero entries of mask [D, H, W]; the whole
// grid when the mask is empty.
std::array<std::pair<int64_t, int64_t>, 3> bounding_box(const at::Tensor& mask) {
  std::array<std::pair<int64_t, int64_t>, 3> box{};
  for (int64_t d = 0; d < 3; ++d) {
    std::vector<int64_t> other;
    for (int64_t e = 0; e < 3; ++e) {
      if (e != d) other.push_back(e);
    }
    const at::Tensor any = mask.any(other[1]).any(other[0]).nonzero();
    if (any.numel() == 0) return {{{0, mask.size(0)}, {0, mask.size(1)}, {0, mask.size(2)}}};
    box[d] = {any.min().item<int64_t>(), any.max().item<int64_t>() + 1};
  }
  return box;
}

}  // namespace

Modality parse_modality(const std::string& name) {
  const std::string n = lower(name);
  if (n == "ct") return Modality::kCT;
  if (n == "pet") return Modality::kPET;
  for (const char* mr : {"mr", "mri", "t1", "t1w", "t1gd", "t1c", "t2", "t2w", "flair", "adc",
                         "dwi", "pd", "swi", "nonenhanced", "cine"}) {
    if (n == mr) return Modality::kMR;
  }
  return Modality::kOther;
}

std::string to_string(Modality modality) {
  switch (modality) {
    case Modality::kCT:
      return "CT";
    case Modality::kMR:
      return "MR";
    case Modality::kPET:
      return "PET";
    case Modality::kOther:
      break;
  }
  return "other";
}

void PreprocessOptions::visit(ConfigVisitor& v) {
  v.field("spacing", spacing,
          "mm per axis (R, A, S) after reorientation to RAS; [] keeps each volume's");
  v.field("crop_foreground", crop_foreground,
          "crop to the non-zero voxels (CT: above -500 HU), never cutting a label");
  v.field("ct_window", ct_window, "CT: HU range kept before the z-score");
  v.field("percentiles", percentiles,
          "MR, PET, other: percentiles of the non-zero voxels kept before the z-score");
}

double percentile(const at::Tensor& values, double q) {
  const at::Tensor v = values.reshape({-1}).to(at::kDouble);
  const int64_t n = v.numel();
  if (n == 0) throw InputError("percentile of no values");
  if (!(q >= 0 && q <= 100)) throw ConfigError(fmt::format("percentile {} outside [0, 100]", q));
  const double position = q / 100.0 * static_cast<double>(n - 1);
  const auto below = static_cast<int64_t>(std::floor(position));
  const double fraction = position - static_cast<double>(below);
  // kthvalue is 1-based and linear-time, with no size limit (unlike quantile).
  const double lo = std::get<0>(at::kthvalue(v, below + 1)).item<double>();
  if (fraction == 0 || below + 1 >= n) return lo;
  const double hi = std::get<0>(at::kthvalue(v, below + 2)).item<double>();
  return lo + fraction * (hi - lo);
}

at::Tensor normalize_intensity(const at::Tensor& image, Modality modality,
                               const PreprocessOptions& options) {
  if (options.ct_window.size() != 2 || options.percentiles.size() != 2) {
    throw ConfigError("preprocess: ct_window and percentiles take two values each");
  }
  std::vector<at::Tensor> channels;
  for (int64_t c = 0; c < image.size(0); ++c) {
    at::Tensor x = image[c].to(at::kFloat);
    at::Tensor statistics_over;  // voxels whose mean and spread define the z-score
    if (modality == Modality::kCT) {
      x = x.clamp(options.ct_window[0], options.ct_window[1]);
      statistics_over = x;
    } else {
      const at::Tensor nonzero = x.masked_select(x != 0);
      const at::Tensor pool = nonzero.numel() > 0 ? nonzero : x.reshape({-1});
      const double lo = percentile(pool, options.percentiles[0]);
      const double hi = percentile(pool, options.percentiles[1]);
      x = x.clamp(lo, hi);
      statistics_over = nonzero.numel() > 0 ? pool.clamp(lo, hi) : x;
    }
    const at::Tensor s = statistics_over.to(at::kDouble);
    const double mean = s.mean().item<double>();
    const double std = s.numel() > 1 ? s.std().item<double>() : 0.0;
    channels.push_back(((x - mean) / std::max(std, 1e-6)).to(at::kFloat));
  }
  return at::stack(channels);
}

Volume target_grid(const Affine& ras, const std::array<int64_t, 3>& ras_shape,
                   const std::vector<double>& spacing) {
  const auto old_spacing = ras.spacing();
  // ras_shape is (nk, nj, ni); axis c of the affine (i, j, k) has size n[c].
  const int64_t n[3] = {ras_shape[2], ras_shape[1], ras_shape[0]};
  Affine a = ras;
  int64_t m[3];
  for (int c = 0; c < 3; ++c) {
    const double extent = static_cast<double>(n[c]) * old_spacing[c];
    const double count = extent / spacing[c];
    if (!(count < static_cast<double>(kMaxPreparedVoxels))) {
      throw InputError(
          fmt::format("resampling to {} mm: {:.3g} voxels along axis {}", spacing[c], count, c));
    }
    m[c] = std::max<int64_t>(1, std::llround(count));
    for (int r = 0; r < 3; ++r) a(r, c) = ras(r, c) / old_spacing[c] * spacing[c];
  }
  // Centres aligned: world(centre of old grid) == world(centre of new grid).
  const auto centre = ras.apply((n[0] - 1) / 2.0, (n[1] - 1) / 2.0, (n[2] - 1) / 2.0);
  for (int r = 0; r < 3; ++r) {
    a(r, 3) = centre[r];
    for (int c = 0; c < 3; ++c) a(r, 3) -= a(r, c) * (m[c] - 1) / 2.0;
  }
  // A header's spacing and dimensions decide the size: checked before anything is allocated.
  int64_t voxels = 1;
  for (int c = 0; c < 3; ++c) {
    if (m[c] > kMaxPreparedVoxels / voxels) {
      throw InputError(fmt::format(
          "resampling {} x {} x {} voxels of {:.3g} x {:.3g} x {:.3g} mm to {} mm would give more "
          "than {} voxels",
          n[0], n[1], n[2], old_spacing[0], old_spacing[1], old_spacing[2],
          fmt::join(spacing, " x "), kMaxPreparedVoxels));
    }
    voxels *= m[c];
  }
  Volume grid;
  // The grid's shape without its memory: a zero-stride view of one byte.
  grid.data = at::zeros({1}, at::kByte).expand({m[2], m[1], m[0]});
  grid.affine = a;
  return grid;
}

PreparedVolume prepare_volume(const Volume& image, const Volume* labels, Modality modality,
                              const PreprocessOptions& options) {
  if (image.data.dim() != 3 && image.data.dim() != 4) {
    throw InputError(file_message(
        image.source, fmt::format("expected a 3D or 4D volume, got {} dims", image.data.dim())));
  }
  if (!options.spacing.empty() && options.spacing.size() != 3) {
    throw ConfigError(fmt::format("preprocess: spacing takes 3 values (mm along R, A, S), got {}",
                                  options.spacing.size()));
  }
  for (double s : options.spacing) {
    if (!(s > 0)) throw ConfigError(fmt::format("preprocess: spacing {} must be positive", s));
  }
  if (labels && (labels->data.sizes() != image.data.sizes().slice(image.data.dim() - 3))) {
    throw InputError(file_message(labels->source, "label map is not on the image's grid"));
  }
  PreparedVolume out;
  Geometry& g = out.geometry;
  g.source_shape = {image.nk(), image.nj(), image.ni()};
  g.source_affine = image.affine;
  g.sform_code = image.sform_code;
  g.qform_code = image.qform_code;

  Volume ras = reorient_to_ras(image);
  std::optional<Volume> ras_labels;
  if (labels) {
    ras_labels = reorient_to_ras(*labels);
    ras_labels->data = ras_labels->data.to(at::kLong);
  }
  // [C, nk, nj, ni] channels first from here on.
  at::Tensor data = ras.data.dim() == 3 ? ras.data.unsqueeze(0) : ras.data;
  if (!options.spacing.empty() && !same_spacing(ras.affine.spacing(), options.spacing)) {
    const Volume grid = target_grid(ras.affine, {ras.nk(), ras.nj(), ras.ni()}, options.spacing);
    std::vector<at::Tensor> channels;
    for (int64_t c = 0; c < data.size(0); ++c) {
      Volume channel = ras;
      channel.data = data[c].to(at::kFloat);
      channels.push_back(resample_to(channel, grid, Interpolation::kLinear).data.to(at::kFloat));
    }
    data = at::stack(channels);
    if (ras_labels) *ras_labels = resample_to(*ras_labels, grid, Interpolation::kNearest);
    ras.affine = grid.affine;
  }
  data = data.to(at::kFloat);
  Affine affine = ras.affine;
  if (options.crop_foreground) {
    const at::Tensor first = data[0];
    at::Tensor foreground = modality == Modality::kCT ? (first > kCtBodyHu) : (data != 0).any(0);
    if (ras_labels) foreground = foreground | (ras_labels->data != 0);
    const auto box = bounding_box(foreground);
    data = data.slice(1, box[0].first, box[0].second)
               .slice(2, box[1].first, box[1].second)
               .slice(3, box[2].first, box[2].second);
    if (ras_labels) {
      ras_labels->data = ras_labels->data.slice(0, box[0].first, box[0].second)
                             .slice(1, box[1].first, box[1].second)
                             .slice(2, box[2].first, box[2].second);
    }
    // Tensor dims (k, j, i) -> voxel offsets (i, j, k).
    Affine shift;
    shift(0, 3) = static_cast<double>(box[2].first);
    shift(1, 3) = static_cast<double>(box[1].first);
    shift(2, 3) = static_cast<double>(box[0].first);
    affine = affine * shift;
  }
  out.image = normalize_intensity(data, modality, options).contiguous();
  if (ras_labels) out.labels = ras_labels->data.contiguous();
  g.shape = {out.image.size(1), out.image.size(2), out.image.size(3)};
  // As a NIfTI header stores it (float32), so the grid written with a prediction is the grid
  // the prediction was mapped back from.
  for (double& v : affine.m) v = static_cast<double>(static_cast<float>(v));
  g.affine = affine;
  return out;
}

SquareFrame square_frame(int64_t h, int64_t w) {
  const int64_t side = std::max(h, w);
  return {h, w, side, (side - h) / 2, (side - w) / 2};
}

at::Tensor to_square(const at::Tensor& x, const SquareFrame& f, int64_t size, bool nearest,
                     double fill) {
  const at::Tensor padded = at::constant_pad_nd(
      x.to(at::kFloat), {f.left, f.side - f.w - f.left, f.top, f.side - f.h - f.top}, fill);
  const at::Tensor batch = padded.unsqueeze(1);  // [N, 1, side, side]
  const at::Tensor resized =
      nearest ? at::upsample_nearest2d(batch, {size, size})
              : at::upsample_bilinear2d(batch, {size, size}, /*align_corners=*/false);
  return resized.squeeze(1);
}

at::Tensor from_square(const at::Tensor& logits, const SquareFrame& f) {
  return at::upsample_bilinear2d(logits, {f.side, f.side}, /*align_corners=*/false)
      .narrow(2, f.top, f.h)
      .narrow(3, f.left, f.w);
}

at::Tensor with_channels(const at::Tensor& image, int64_t channels, const std::string& source) {
  if (image.size(0) == channels) return image;
  if (channels == 1) return image.narrow(0, 0, std::min<int64_t>(3, image.size(0))).mean(0, true);
  if (channels == 3 && image.size(0) == 1) return image.expand({3, -1, -1}).contiguous();
  throw InputError(file_message(
      source, fmt::format("has {} channels; the model takes {}", image.size(0), channels)));
}

Volume restore_labels(const at::Tensor& labels, const Geometry& g) {
  TORCH_CHECK(labels.dim() == 3 && labels.size(0) == g.shape[0] && labels.size(1) == g.shape[1] &&
                  labels.size(2) == g.shape[2],
              "restore_labels: labels ", labels.sizes(), " are not on the prepared grid");
  // Source voxel (i, j, k) -> prepared voxel coordinates, in double precision: nearest neighbour
  // as scipy's map_coordinates(order=0, mode="constant") and so nibabel's resample_from_to take
  // it: index floor(c + 0.5), and 0 outside [0, n - 1] on any axis, give or take kEdge voxels
  // (float32 affines put grid-aligned edges a rounding error outside).
  const Affine m = g.affine.inverse() * g.source_affine;
  const int64_t nk = g.source_shape[0], nj = g.source_shape[1], ni = g.source_shape[2];
  const int64_t n[3] = {g.shape[2], g.shape[1], g.shape[0]};  // prepared sizes along i, j, k
  const at::Tensor flat = labels.to(at::kLong).contiguous().reshape({-1});
  const auto d = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor i = at::arange(ni, d).view({1, ni});
  const at::Tensor j = at::arange(nj, d).view({nj, 1});
  at::Tensor out = at::zeros({nk, nj, ni}, at::kLong);
  for (int64_t k = 0; k < nk; ++k) {  // a slice at a time bounds the memory of the coordinates
    at::Tensor index = at::zeros({nj, ni}, at::kLong);
    at::Tensor inside = at::ones({nj, ni}, at::kBool);
    const int64_t stride[3] = {1, n[0], n[0] * n[1]};
    for (int r = 0; r < 3; ++r) {
      const at::Tensor c = i * m(r, 0) + j * m(r, 1) + (m(r, 2) * static_cast<double>(k) + m(r, 3));
      inside = inside & (c >= -kEdge) & (c <= static_cast<double>(n[r] - 1) + kEdge);
      index = index +
              (c + 0.5).floor().clamp(0, static_cast<double>(n[r] - 1)).to(at::kLong) * stride[r];
    }
    out[k] = at::where(inside, flat.index_select(0, index.reshape({-1})).view({nj, ni}),
                       at::zeros({nj, ni}, at::kLong));
  }
  Volume v;
  v.data = out;
  v.affine = g.source_affine;
  v.sform_code = g.sform_code;
  v.qform_code = g.qform_code;
  return v;
}

}  // namespace iris
