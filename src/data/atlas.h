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

}  // namespace iris
