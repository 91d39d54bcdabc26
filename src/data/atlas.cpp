#include "data/atlas.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include "core/error.h"
#include "io/nifti.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

struct LabelMapSpec {
  const char* name;
  const char* file;
  const char* fallback_prefix;  // for atlases that ship without a names file
};

constexpr LabelMapSpec kLabelMaps[] = {
    {"aal", "aal.nii.gz", "aal_"},
    {"brodmann", "brodmann.nii.gz", "BA"},
    {"HarvardOxford-cort", "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz", "HarvardOxford_cort_"},
    {"JHU-WhiteMatter", "JHU-WhiteMatter-labels-1mm.nii.gz", "JHU_"},
};

bool same_grid(const Volume& a, const Volume& b) {
  if (a.data.sizes() != b.data.sizes()) return false;
  for (int i = 0; i < 16; ++i) {
    if (std::abs(a.affine.m[i] - b.affine.m[i]) > 1e-6) return false;
  }
  return true;
}

constexpr float kFar = std::numeric_limits<float>::max() / 4;

// One pass of the exact squared Euclidean distance transform (Felzenszwalb & Huttenlocher) along
// a line of n samples `step` apart in memory and `spacing` mm apart; f holds squared distances.
void edt_line(float* f, int64_t n, int64_t step, double spacing, std::vector<float>& in,
              std::vector<int64_t>& v, std::vector<double>& z) {
  const double w = spacing * spacing;
  for (int64_t q = 0; q < n; ++q) in[q] = f[q * step];
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (in[q] >= kFar) continue;
    double s = 0;
    while (k >= 0) {
      const int64_t p = v[k];
      s = ((in[q] + w * q * q) - (in[p] + w * p * p)) / (2 * w * (q - p));
      if (s > z[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    z[k] = k == 0 ? -std::numeric_limits<double>::infinity() : s;
  }
  if (k < 0) return;  // no finite sample on this line
  int64_t j = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (j < k && z[j + 1] < q) ++j;
    const double d = double(q - v[j]);
    f[q * step] = static_cast<float>(w * d * d + in[v[j]]);
  }
}

// Squared distance in mm from every voxel to the nearest true voxel of `mask` [nk, nj, ni].
at::Tensor squared_distance_to(const at::Tensor& mask, const std::array<double, 3>& spacing) {
  at::Tensor d =
      at::where(mask, at::zeros({}, at::kFloat), at::full({}, kFar, at::kFloat)).contiguous();
  const int64_t nk = d.size(0), nj = d.size(1), ni = d.size(2);
  const int64_t longest = std::max({nk, nj, ni});
  std::vector<float> in(longest);
  std::vector<int64_t> v(longest);
  std::vector<double> z(longest + 1);
  float* f = d.data_ptr<float>();
  for (int64_t k = 0; k < nk; ++k)
    for (int64_t j = 0; j < nj; ++j) edt_line(f + (k * nj + j) * ni, ni, 1, spacing[0], in, v, z);
  for (int64_t k = 0; k < nk; ++k)
    for (int64_t i = 0; i < ni; ++i) edt_line(f + k * nj * ni + i, nj, ni, spacing[1], in, v, z);
  for (int64_t j = 0; j < nj; ++j)
    for (int64_t i = 0; i < ni; ++i) edt_line(f + j * ni + i, nk, nj * ni, spacing[2], in, v, z);
  return d;
}

at::Tensor dilate(const at::Tensor& mask, double radius_mm, const std::array<double, 3>& spacing) {
  if (radius_mm <= 0) return mask;
  return squared_distance_to(mask, spacing) <= radius_mm * radius_mm;
}

// Background voxels that cannot reach the volume border through 6-connected background become
// foreground.
at::Tensor fill_holes(const at::Tensor& mask) {
  at::Tensor m = mask.to(at::kByte).contiguous();  // 1 = foreground, 2 = outside, 0 = hole
  const int64_t nk = m.size(0), nj = m.size(1), ni = m.size(2);
  uint8_t* p = m.data_ptr<uint8_t>();
  std::deque<int64_t> queue;
  auto visit = [&](int64_t k, int64_t j, int64_t i) {
    const int64_t idx = (k * nj + j) * ni + i;
    if (p[idx] == 0) {
      p[idx] = 2;
      queue.push_back(idx);
    }
  };
  for (int64_t k = 0; k < nk; ++k)
    for (int64_t j = 0; j < nj; ++j)
      for (int64_t i = 0; i < ni; ++i) {
        if (k == 0 || j == 0 || i == 0 || k == nk - 1 || j == nj - 1 || i == ni - 1) visit(k, j, i);
      }
  while (!queue.empty()) {
    const int64_t idx = queue.front();
    queue.pop_front();
    const int64_t i = idx % ni, j = (idx / ni) % nj, k = idx / (ni * nj);
    if (i > 0) visit(k, j, i - 1);
    if (i + 1 < ni) visit(k, j, i + 1);
    if (j > 0) visit(k, j - 1, i);
    if (j + 1 < nj) visit(k, j + 1, i);
    if (k > 0) visit(k - 1, j, i);
    if (k + 1 < nk) visit(k + 1, j, i);
  }
  return m != 2;
}

}  // namespace

at::Tensor brain_mask(const Volume& t1, const BrainMaskOptions& options) {
  TORCH_CHECK(t1.data.dim() == 3, "brain_mask: expected a 3D volume [nk, nj, ni], got ",
              t1.data.sizes());
  if (options.closing_radius_mm < 0 || options.margin_mm < 0) {
    throw ConfigError(fmt::format("brain mask: radii must be >= 0 mm (closing {}, margin {})",
                                  options.closing_radius_mm, options.margin_mm));
  }
  const auto spacing = t1.affine.spacing();
  const at::Tensor tissue = t1.data.to(at::kDouble) > options.threshold;
  at::Tensor closed = tissue;
  if (options.closing_radius_mm > 0) {
    const at::Tensor grown = dilate(tissue, options.closing_radius_mm, spacing);
    // Erosion is the dilation of the background.
    closed = dilate(grown.logical_not(), options.closing_radius_mm, spacing).logical_not();
    closed = closed | tissue;  // a closing never removes tissue
  }
  return dilate(fill_holes(closed), options.margin_mm, spacing);
}

const AtlasLabelMap& MricronAtlas::label_map(const std::string& name) const {
  for (const auto& m : label_maps) {
    if (m.name == name) return m;
  }
  std::string known;
  for (const auto& m : label_maps) known += (known.empty() ? "" : ", ") + m.name;
  throw InputError(fmt::format("atlas label map '{}' is not loaded; loaded: {}", name, known));
}

bool is_mricron_atlas_dir(const fs::path& dir) {
  return fs::exists(dir / "ch2bet.nii.gz") && fs::exists(dir / "aal.nii.gz");
}

MricronAtlas load_mricron_atlas(const fs::path& dir, const std::vector<std::string>& which) {
  if (!is_mricron_atlas_dir(dir)) {
    throw InputError(file_message(dir.string(), "not the mricron templates folder (no ch2bet.nii.gz "
                                                "and aal.nii.gz); install Debian's mricron-data"));
  }
  for (const auto& w : which) {
    bool known = false;
    for (const auto& spec : kLabelMaps) known |= w == spec.name;
    if (!known) {
      throw InputError(fmt::format("unknown atlas label map '{}'; expected aal, brodmann, "
                                   "HarvardOxford-cort or JHU-WhiteMatter", w));
    }
  }
  MricronAtlas atlas;
  atlas.image = read_nifti(dir / "ch2bet.nii.gz");
  for (const auto& spec : kLabelMaps) {
    if (!which.empty() && std::find(which.begin(), which.end(), spec.name) == which.end()) continue;
    AtlasLabelMap map;
    map.name = spec.name;
    map.file = (dir / spec.file).string();
    map.fallback_prefix = spec.fallback_prefix;
    map.labels = read_nifti(map.file);
    if (!same_grid(map.labels, atlas.image)) {
      map.labels = resample_to(map.labels, atlas.image, Interpolation::kNearest);
      map.resampled = true;
    }
    const fs::path names = fs::path(map.file).replace_extension("").string() + ".txt";  // x.nii.txt
    if (fs::exists(names)) map.table = read_label_table(names);
    atlas.label_maps.push_back(std::move(map));
  }
  return atlas;
}

}  // namespace iris
