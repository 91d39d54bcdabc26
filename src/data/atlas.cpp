#include "data/atlas.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include "core/distance_transform.h"
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

at::Tensor dilate(const at::Tensor& mask, double radius_mm, const std::array<double, 3>& spacing) {
  if (radius_mm <= 0) return mask;
  // spacing is along (i, j, k); the tensor's dims are (k, j, i).
  return squared_distance_to(mask, {spacing[2], spacing[1], spacing[0]}) <= radius_mm * radius_mm;
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
