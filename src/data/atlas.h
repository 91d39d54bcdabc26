// The real MRI atlases shipped by Debian's mricron-data (/usr/share/mricron/templates): the
// Colin27 T1 brain `ch2bet` (1 mm, RAS) with label maps on its grid (`aal`, 116 regions;
// `brodmann`, 41 areas) and on other grids that are resampled onto it through their affines
// (`HarvardOxford-cort-maxprob-thr0-1mm`, 48 cortical areas, LAS; `JHU-WhiteMatter-labels-1mm`,
// 48 tracts).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "data/label_table.h"
#include "io/volume.h"

namespace iris {

inline const std::filesystem::path kMricronTemplates = "/usr/share/mricron/templates";

struct AtlasLabelMap {
  std::string name;       // "aal", "brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"
  std::string file;       // file it was read from
  Volume labels;          // on the grid of the atlas image (resampled where needed)
  LabelTable table;       // names from the .txt beside the file, else "<prefix><value>"
  std::string fallback_prefix;
  bool resampled = false;
  std::string class_name(int64_t value) const { return table.name_of(value, fallback_prefix); }
};

struct MricronAtlas {
  Volume image;  // ch2bet, uint8 T1 intensities
  std::vector<AtlasLabelMap> label_maps;
  const AtlasLabelMap& label_map(const std::string& name) const;  // throws InputError
};

// True when `dir` holds the mricron templates (ch2bet.nii.gz and aal.nii.gz).
bool is_mricron_atlas_dir(const std::filesystem::path& dir);

// Loads ch2bet and the label maps named in `which` (all four when empty).
MricronAtlas load_mricron_atlas(const std::filesystem::path& dir = kMricronTemplates,
                                const std::vector<std::string>& which = {});

// Brain mask of a (skull-stripped) T1: tissue = intensity > threshold, then a morphological
// closing with a ball of closing_radius_mm (bridges dark sulcal CSF and folds narrower than
// about twice the radius), then hole filling (background not 6-connected to the volume border
// becomes brain), then an optional outward growth by margin_mm. Distances are Euclidean in mm
// through the affine's spacing, so anisotropic grids get round balls. Skull stripping stops at
// the pial surface; the intracranial region that MNI-space atlases assume also holds the outer
// (subarachnoid) CSF, 1-5 mm thick on Colin27 (the dark band of the unstripped ch2 between
// ch2bet's edge and the skull): margin_mm covers it when the mask stands for that region.
struct BrainMaskOptions {
  double threshold = 0.0;
  double closing_radius_mm = 5.0;
  double margin_mm = 0.0;
};
at::Tensor brain_mask(const Volume& t1, const BrainMaskOptions& options = {});  // [nk, nj, ni] bool

}  // namespace iris
