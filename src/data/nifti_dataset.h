// NIfTI image/label folders in the MSD / nnU-Net layout: imagesTr/<case>.nii.gz (MSD) or
// imagesTr/<case>_0000.nii.gz (nnU-Net channel suffix) with labelsTr/<case>.nii.gz, and label
// names from dataset.json when present ({"0": "background", ...} in MSD, {"background": 0, ...}
// in nnU-Net v2).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "data/inspect.h"
#include "io/volume.h"

namespace iris {

struct NiftiCase {
  std::string id;
  std::filesystem::path image;
  std::filesystem::path label;              // empty when the case has no label file
  std::array<int64_t, 3> shape{};           // ni, nj, nk of the image
  std::array<double, 3> spacing{};          // mm along i, j, k
  std::map<int64_t, int64_t> class_voxels;  // non-zero label value -> voxel count
  bool ok = false;                          // image and label read and on the same grid
};

struct NiftiDataset {
  std::filesystem::path root;
  std::map<int64_t, std::string> label_names;  // from dataset.json, background excluded
  std::vector<NiftiCase> cases;
  std::vector<std::string> problems;  // one line each, naming the file

  std::string class_name(int64_t value) const;
};

// True when `dir` has an imagesTr folder.
bool is_nifti_dataset_dir(const std::filesystem::path& dir);

// Lists the cases of the tree, reading every image and label to record geometry and class
// counts. Problems (missing label, label without image, unreadable or truncated file, shape or
// affine mismatch, bad dataset.json) are collected, not thrown; throws InputError only when
// `dir` is not such a tree.
NiftiDataset scan_nifti_dataset(const std::filesystem::path& dir);

// Reads one case's image and labels; throws InputError naming the file on any problem,
// including a label map that is not on the image's grid.
std::pair<Volume, Volume> load_nifti_case(const NiftiCase& c);

// `iris data inspect` on such a tree.
InspectReport inspect_nifti_dataset(const std::filesystem::path& dir);

}  // namespace iris
