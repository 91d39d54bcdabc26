#include "data/episodes.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "core/error.h"

namespace iris {
namespace {

// [Z, H, W] -> padded to square (centred, zeros) -> [Z, size, size].
at::Tensor square_resize(const at::Tensor& slices, int64_t size, bool nearest) {
  const int64_t h = slices.size(1), w = slices.size(2), side = std::max(h, w);
  const int64_t top = (side - h) / 2, left = (side - w) / 2;
  const at::Tensor padded = at::constant_pad_nd(slices, {left, side - w - left, top, side - h - top}, 0);
  const at::Tensor x = padded.unsqueeze(1).to(at::kFloat);  // [Z, 1, side, side]
  const at::Tensor resized = nearest ? at::upsample_nearest2d(x, {size, size})
                                     : at::upsample_bilinear2d(x, {size, size}, /*align_corners=*/false);
  return resized.squeeze(1);
}

int64_t pick(std::mt19937_64& rng, int64_t n) {
  return static_cast<int64_t>(std::uniform_int_distribution<int64_t>(0, n - 1)(rng));
}

// x: [C, H, W] moved by (dy, dx) pixels with zeros coming in, then mirrored left-right if `flip`.
at::Tensor shift_flip(const at::Tensor& x, int64_t dy, int64_t dx, bool flip) {
  const int64_t h = x.size(1), w = x.size(2);
  at::Tensor y = at::constant_pad_nd(x, {std::max<int64_t>(dx, 0), std::max<int64_t>(-dx, 0),
                                         std::max<int64_t>(dy, 0), std::max<int64_t>(-dy, 0)},
                                     0);
  y = y.narrow(1, std::max<int64_t>(-dy, 0), h).narrow(2, std::max<int64_t>(-dx, 0), w);
  return (flip ? y.flip({2}) : y).contiguous();
}

// [S, S] masks on the reference and query slices of a composite made from class `c`: its union
// with one of the three classes nearest to it on the reference slice, or its part on one side of a
// random line through its centre. Nothing when the composite is too small on the reference.
std::optional<std::pair<at::Tensor, at::Tensor>> composite_masks(
    const SliceDataset& data, std::mt19937_64& rng, int64_t c, int64_t ref, int64_t query,
    const std::vector<int64_t>& classes, int64_t min_area) {
  at::Tensor r = data.mask(ref, c), q = data.mask(query, c);
  auto centre = [](const at::Tensor& m) { return m.nonzero().to(at::kDouble).mean(0); };  // (y, x)
  const at::Tensor c_ref = centre(r);
  if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.5) {
    std::vector<std::pair<double, int64_t>> near;
    for (int64_t o : classes) {
      const auto& on = data.slices_with(o);
      if (o == c || !std::binary_search(on.begin(), on.end(), ref)) continue;
      near.emplace_back((centre(data.mask(ref, o)) - c_ref).norm().item<double>(), o);
    }
    if (near.empty()) return std::nullopt;
    std::sort(near.begin(), near.end());
    const int64_t o = near[pick(rng, std::min<int64_t>(3, near.size()))].second;
    r = at::maximum(r, data.mask(ref, o));
    q = at::maximum(q, data.mask(query, o));
  } else {
    const double angle = std::uniform_real_distribution<double>(0, 2 * M_PI)(rng);
    const at::Tensor axis = at::arange(data.size(), at::kDouble);
    const at::Tensor side = (axis.unsqueeze(1) - c_ref[0]) * std::sin(angle) +
                            (axis.unsqueeze(0) - c_ref[1]) * std::cos(angle);  // [S, S]
    const at::Tensor keep = (side >= 0).to(at::kFloat);
    r = r * keep;
    q = q * keep;
  }
  if (r.sum().item<double>() < static_cast<double>(min_area)) return std::nullopt;
  return std::make_pair(r, q);
}

// Normalised intensity above which a slice pixel counts as brain (normalize_mri maps the
// background to 0).
constexpr double kBrainLevel = 0.02;

// [S, S] masks on the reference and query slices of a random ellipsoid: centred on a brain pixel
// of the reference, at a depth between the two slices and deep enough to reach both most of the
// time, then cut to the bright tissue, the dark tissue (split at the reference's median brain
// intensity) or the brain. Nothing when it is too small on the reference.
std::optional<std::pair<at::Tensor, at::Tensor>> random_class_masks(const SliceDataset& data,
                                                                    std::mt19937_64& rng,
                                                                    int64_t ref, int64_t query,
                                                                    int64_t min_area) {
  auto uniform = [&](double a, double b) {
    return std::uniform_real_distribution<double>(a, b)(rng);
  };
  const at::Tensor ref_image = data.image(ref)[0], query_image = data.image(query)[0];
  const at::Tensor brain = (ref_image > kBrainLevel).nonzero();  // [N, 2] (y, x)
  if (brain.size(0) == 0) return std::nullopt;
  const at::Tensor centre = brain[pick(rng, brain.size(0))].to(at::kDouble);
  const double z_ref = static_cast<double>(data.slice_indices()[ref]);
  const double z_query = static_cast<double>(data.slice_indices()[query]);
  const double cz = z_ref + uniform(0, 1) * (z_query - z_ref);
  const double rz = std::max(3.0, std::abs(z_query - z_ref) * uniform(0.6, 1.6));  // slices
  const double s = static_cast<double>(data.size());
  const double ry = s * uniform(0.05, 0.22), rx = s * uniform(0.05, 0.22);
  const double angle = uniform(0, M_PI);
  const double threshold = ref_image.masked_select(ref_image > kBrainLevel).median().item<double>();
  const int64_t tissue = pick(rng, 3);  // 0 bright, 1 dark, 2 brain
  const at::Tensor axis = at::arange(data.size(), at::kDouble);
  const at::Tensor dy = axis.unsqueeze(1) - centre[0], dx = axis.unsqueeze(0) - centre[1];
  const at::Tensor u = (dy * std::cos(angle) + dx * std::sin(angle)) / ry;
  const at::Tensor v = (dx * std::cos(angle) - dy * std::sin(angle)) / rx;
  auto on_slice = [&](const at::Tensor& image, double z) {
    const double reach = 1 - std::pow((z - cz) / rz, 2);  // squared radius left at depth z
    at::Tensor m = (u * u + v * v <= reach) & (image > kBrainLevel);
    if (tissue == 0) m = m & (image > threshold);
    if (tissue == 1) m = m & (image <= threshold);
    return m.to(at::kFloat);
  };
  const at::Tensor r = on_slice(ref_image, z_ref), q = on_slice(query_image, z_query);
  if (r.sum().item<double>() < static_cast<double>(min_area)) return std::nullopt;
  return std::make_pair(r, q);
}

}  // namespace

at::Tensor normalize_mri(const at::Tensor& volume, double low_percentile, double high_percentile) {
  const at::Tensor v = volume.to(at::kFloat);
  const at::Tensor nonzero = v.masked_select(v != 0);
  if (nonzero.numel() == 0) return at::zeros_like(v);
  const at::Tensor q = at::quantile(nonzero.to(at::kDouble),
                                    at::tensor({low_percentile / 100.0, high_percentile / 100.0}, at::kDouble));
  const double lo = q[0].item<double>(), hi = q[1].item<double>();
  return ((v.clamp(lo, hi) - lo) / std::max(hi - lo, 1e-6)).masked_fill(v == 0, 0.0);
}

std::vector<int64_t> nonempty_slices(const at::Tensor& image, int64_t min_voxels) {
  const at::Tensor counts = (image > 0).flatten(1).sum(1).contiguous();
  const auto* c = counts.data_ptr<int64_t>();
  std::vector<int64_t> slices;
  for (int64_t k = 0; k < counts.numel(); ++k) {
    if (c[k] >= min_voxels) slices.push_back(k);
  }
  return slices;
}

SliceDataset::SliceDataset(const Volume& image, const Volume& labels, std::vector<int64_t> slice_indices,
                           int64_t size, int64_t min_area)
    : size_(size), slices_(std::move(slice_indices)) {
  TORCH_CHECK(image.data.sizes() == labels.data.sizes(), "slice dataset: image ", image.data.sizes(),
              " and labels ", labels.data.sizes(), " are not on the same grid");
  TORCH_CHECK(!slices_.empty(), "slice dataset: no slices selected");
  const at::Tensor index = at::tensor(slices_, at::kLong);
  images_ = square_resize(normalize_mri(image.data).index_select(0, index), size, false).contiguous();
  labels_ = square_resize(labels.data.index_select(0, index), size, true).to(at::kLong).contiguous();
  for (int64_t z = 0; z < static_cast<int64_t>(slices_.size()); ++z) {
    const at::Tensor counts = at::bincount(labels_[z].reshape({-1}));
    const auto* c = counts.data_ptr<int64_t>();
    for (int64_t v = 1; v < counts.numel(); ++v) {
      if (c[v] >= min_area) present_[v].push_back(z);
    }
  }
}

std::vector<int64_t> SliceDataset::episode_classes() const {
  std::vector<int64_t> out;
  for (const auto& [value, slices] : present_) {
    if (slices.size() >= 2) out.push_back(value);
  }
  return out;
}

const std::vector<int64_t>& SliceDataset::slices_with(int64_t value) const {
  static const std::vector<int64_t> kNone;
  const auto it = present_.find(value);
  return it == present_.end() ? kNone : it->second;
}

at::Tensor SliceDataset::mask(int64_t position, int64_t value) const {
  return (labels_[position] == value).to(at::kFloat);
}

Episode SliceDataset::sample(std::mt19937_64& rng, const std::vector<int64_t>& classes,
                             const SliceEpisodeOptions& options) const {
  if (classes.empty()) throw InputError("episode sampling: no classes to sample from");
  // Anchor class, then a reference slice holding it; the other classes are drawn among those
  // also present on that reference slice.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int64_t anchor = classes[pick(rng, classes.size())];
    const auto& anchor_slices = slices_with(anchor);
    if (anchor_slices.size() < 2) continue;
    const int64_t ref = anchor_slices[pick(rng, anchor_slices.size())];
    std::vector<int64_t> chosen{anchor};
    std::vector<int64_t> others;
    for (int64_t c : classes) {
      const auto& s = slices_with(c);
      if (c != anchor && std::binary_search(s.begin(), s.end(), ref)) others.push_back(c);
    }
    std::shuffle(others.begin(), others.end(), rng);
    for (int64_t c : others) {
      if (static_cast<int64_t>(chosen.size()) >= options.classes_per_episode) break;
      chosen.push_back(c);
    }
    // Query: a different slice holding the anchor, or occasionally any far-enough slice.
    std::vector<int64_t> candidates;
    const bool allow_absent =
        std::uniform_real_distribution<double>(0, 1)(rng) < options.absent_query_probability;
    for (int64_t z = 0; z < static_cast<int64_t>(slices_.size()); ++z) {
      if (std::abs(slices_[z] - slices_[ref]) < std::max<int64_t>(1, options.min_slice_gap)) continue;
      if (allow_absent || std::binary_search(anchor_slices.begin(), anchor_slices.end(), z)) {
        candidates.push_back(z);
      }
    }
    if (candidates.empty()) continue;
    const int64_t query = candidates[pick(rng, candidates.size())];
    Episode e;
    e.ref_slice = slices_[ref];
    e.query_slice = slices_[query];
    e.ref_image = image(ref);
    e.query_image = image(query);
    std::vector<at::Tensor> rm, qm;
    for (int64_t c : chosen) {
      // A random or composite class in place of `c` (label value -1), when one is drawn.
      std::optional<std::pair<at::Tensor, at::Tensor>> replaced;
      if (options.random_class_probability > 0 &&
          std::uniform_real_distribution<double>(0, 1)(rng) < options.random_class_probability) {
        for (int attempt = 0; attempt < 5 && !replaced; ++attempt) {
          replaced = random_class_masks(*this, rng, ref, query, options.min_area);
        }
      }
      if (!replaced && options.composite_probability > 0 &&
          std::uniform_real_distribution<double>(0, 1)(rng) < options.composite_probability) {
        replaced = composite_masks(*this, rng, c, ref, query, classes, options.min_area);
      }
      e.class_values.push_back(replaced ? -1 : c);
      rm.push_back(replaced ? replaced->first : mask(ref, c));
      qm.push_back(replaced ? replaced->second : mask(query, c));
    }
    e.ref_masks = at::stack(rm);
    e.query_masks = at::stack(qm);
    if (options.joint_shift > 0 || options.joint_flip) {
      std::uniform_int_distribution<int64_t> shift(-options.joint_shift, options.joint_shift);
      const int64_t dy = shift(rng), dx = shift(rng);
      const bool flip = options.joint_flip && std::uniform_real_distribution<double>(0, 1)(rng) < 0.5;
      e.ref_image = shift_flip(e.ref_image, dy, dx, flip);
      e.ref_masks = shift_flip(e.ref_masks, dy, dx, flip);
      e.query_image = shift_flip(e.query_image, dy, dx, flip);
      e.query_masks = shift_flip(e.query_masks, dy, dx, flip);
    }
    return e;
  }
  throw InputError(fmt::format("episode sampling: no reference/query pair found for {} classes "
                               "(too few slices per class?)",
                               classes.size()));
}

namespace {

// Corner of a patch of `size` voxels centred on `centre`, kept inside [0, extent) when it fits.
int64_t patch_corner(int64_t centre, int64_t size, int64_t extent) {
  if (extent <= size) return 0;
  return std::clamp<int64_t>(centre - size / 2, 0, extent - size);
}

// [nk, nj, ni] -> [D, H, W] patch at `corner`, zero-padded where the volume is smaller.
at::Tensor crop(const at::Tensor& volume, const std::array<int64_t, 3>& corner,
                const std::array<int64_t, 3>& size) {
  at::Tensor out = volume;
  for (int64_t d = 0; d < 3; ++d) {
    out = out.slice(d, corner[d], std::min(corner[d] + size[d], volume.size(d)));
  }
  return at::constant_pad_nd(
      out, {0, size[2] - out.size(2), 0, size[1] - out.size(1), 0, size[0] - out.size(0)}, 0);
}

// Corner of a patch centred on a random voxel of class `value` in `labels`.
std::array<int64_t, 3> patch_on_class(std::mt19937_64& rng, const at::Tensor& labels, int64_t value,
                                      const std::array<int64_t, 3>& size) {
  const at::Tensor voxels = (labels == value).nonzero();  // [N, 3]
  TORCH_CHECK(voxels.size(0) > 0, "patch episode: class ", value, " has no voxels");
  const at::Tensor v = voxels[pick(rng, voxels.size(0))];
  std::array<int64_t, 3> corner{};
  for (int64_t d = 0; d < 3; ++d)
    corner[d] = patch_corner(v[d].item<int64_t>(), size[d], labels.size(d));
  return corner;
}

}  // namespace

VolumeEpisodeSampler::VolumeEpisodeSampler(const std::vector<Volume>& images,
                                           const std::vector<Volume>& labels, int64_t min_voxels) {
  TORCH_CHECK(images.size() == labels.size(), "volume episodes: ", images.size(), " images but ",
              labels.size(), " label maps");
  for (std::size_t c = 0; c < images.size(); ++c) {
    TORCH_CHECK(images[c].data.dim() == 3 && images[c].data.sizes() == labels[c].data.sizes(),
                "volume episodes: case ", c, " image ", images[c].data.sizes(), " and labels ",
                labels[c].data.sizes(), " are not 3D volumes on one grid");
    images_.push_back(normalize_mri(images[c].data).contiguous());
    labels_.push_back(labels[c].data.to(at::kLong).contiguous());
    const at::Tensor counts = at::bincount(labels_.back().reshape({-1}).clamp_min(0));
    const auto* n = counts.data_ptr<int64_t>();
    for (int64_t v = 1; v < counts.numel(); ++v) {
      if (n[v] >= min_voxels) present_[v].push_back(static_cast<int64_t>(c));
    }
  }
}

std::vector<int64_t> VolumeEpisodeSampler::episode_classes() const {
  std::vector<int64_t> out;
  for (const auto& [value, cases] : present_) {
    if (cases.size() >= 2) out.push_back(value);
  }
  return out;
}

const std::vector<int64_t>& VolumeEpisodeSampler::cases_with(int64_t value) const {
  static const std::vector<int64_t> kNone;
  const auto it = present_.find(value);
  return it == present_.end() ? kNone : it->second;
}

PatchEpisode VolumeEpisodeSampler::sample(std::mt19937_64& rng, const std::vector<int64_t>& classes,
                                          const PatchEpisodeOptions& options) const {
  if (classes.empty()) throw InputError("patch episode sampling: no classes to sample from");
  for (int64_t d = 0; d < 3; ++d) {
    if (options.patch_size[d] < 1)
      throw ConfigError("patch episode sampling: patch size must be >= 1");
  }
  const auto& size = options.patch_size;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int64_t anchor = classes[pick(rng, classes.size())];
    const auto& holders = cases_with(anchor);
    if (holders.size() < 2) continue;
    const int64_t ref = holders[pick(rng, holders.size())];
    std::vector<int64_t> others;
    for (int64_t c : holders) {
      if (c != ref) others.push_back(c);
    }
    const int64_t query = others[pick(rng, others.size())];
    PatchEpisode e;
    e.ref_case = ref;
    e.query_case = query;
    e.ref_origin = patch_on_class(rng, labels_[ref], anchor, size);
    e.query_origin = patch_on_class(rng, labels_[query], anchor, size);
    const at::Tensor ref_labels = crop(labels_[ref], e.ref_origin, size);
    const at::Tensor query_labels = crop(labels_[query], e.query_origin, size);
    // The anchor must survive the crop in both patches (it can be cut when thin).
    if ((ref_labels == anchor).sum().item<int64_t>() == 0 ||
        (query_labels == anchor).sum().item<int64_t>() == 0) {
      continue;
    }
    e.class_values = {anchor};
    std::vector<int64_t> extra;
    for (int64_t c : classes) {
      if (c != anchor && (ref_labels == c).sum().item<int64_t>() >= options.min_voxels)
        extra.push_back(c);
    }
    std::shuffle(extra.begin(), extra.end(), rng);
    for (int64_t c : extra) {
      if (static_cast<int64_t>(e.class_values.size()) >= options.classes_per_episode) break;
      e.class_values.push_back(c);
    }
    e.ref_image = crop(images_[ref], e.ref_origin, size).unsqueeze(0);
    e.query_image = crop(images_[query], e.query_origin, size).unsqueeze(0);
    std::vector<at::Tensor> rm, qm;
    for (int64_t c : e.class_values) {
      rm.push_back((ref_labels == c).to(at::kFloat));
      qm.push_back((query_labels == c).to(at::kFloat));
    }
    e.ref_masks = at::stack(rm);
    e.query_masks = at::stack(qm);
    return e;
  }
  throw InputError(
      fmt::format("patch episode sampling: no reference/query pair found for {} classes "
                  "(need each class in at least two cases)",
                  classes.size()));
}

}  // namespace iris
