#include "data/atlas.h"

#include <fmt/format.h>

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

}  // namespace

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
