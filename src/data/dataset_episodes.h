// Training IRIS on users' datasets (`data.datasets` in an IRIS training config): MSD / nnU-Net
// NIfTI trees and 2D image folders, each read, checked and prepared through data/preprocess.h,
// split into training and validation cases, and sampled as cross-case episodes: the reference
// and the query are always different cases of the same dataset.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "data/episodes.h"
#include "data/preprocess.h"

namespace iris {

class ConfigVisitor;

// One entry of data.datasets.
struct DatasetSpec {
  std::string path;
  std::string name;      // memory-bank key and report name; "" -> the folder's name
  double weight = 1;     // chance of an episode from this dataset, relative to the others
  std::string modality;  // "" -> dataset.json's (channel 0), else MR for volumes, other for images
  std::vector<int64_t> classes;          // label values to train on; [] -> all
  std::vector<int64_t> exclude_classes;  // held out (never trained), e.g. for generalisation
  std::string mask_suffix;               // 2D folders: mask stem = image stem + this ("" -> found)
  void visit(ConfigVisitor& v);
};

// dataset.json's modality of channel 0 ("modality" in MSD, "channel_names" in nnU-Net v2); ""
// when there is none.
std::string dataset_json_modality(const std::filesystem::path& root);

// Fills what a spec leaves to the data: the name (the folder's) and the modality (dataset.json's,
// else MR for NIfTI trees and other for image folders), so a run's config.yaml records what it
// trained on.
std::vector<DatasetSpec> resolve_dataset_specs(std::vector<DatasetSpec> specs);

struct DatasetLoadOptions {
  int64_t spatial_dims = 3;
  int64_t in_channels = 1;
  PreprocessOptions preprocess;
  int64_t image_size = 64;           // 2D: images padded square and resized to this
  double validation_fraction = 0.2;  // of each dataset's usable cases (at least 2)
  int64_t min_voxels = 20;           // for a class to count as present in a case
};

struct PreparedCase {
  std::string id;
  at::Tensor image;       // [C, D, H, W] float32, normalised (2D images: D = 1)
  at::Tensor labels;      // [D, H, W] int64
  double background = 0;  // the image's lowest value: padding of patches beyond its edge
};

// Label values a dataset may use (cases with others are skipped): episodes carry a dataset's
// index beside the value (data.datasets in training).
inline constexpr int64_t kMaxLabelValue = (int64_t{1} << 31) - 1;

struct PreparedDataset {
  std::string name;
  std::string layout;  // "nifti" or "images"
  Modality modality = Modality::kMR;
  double weight = 1;
  std::map<int64_t, std::string> label_names;  // dataset.json's, background excluded
  std::vector<int64_t> classes;                // trained (subset minus exclusions)
  std::vector<int64_t> excluded;               // data.datasets[].exclude_classes
  std::vector<PreparedCase> train, validation;
  std::vector<std::string> warnings;  // skipped cases, one line each naming the file

  std::string class_name(int64_t value) const;
};

// Reads and prepares every dataset. Each unusable case (unreadable or truncated file, image and
// label of different sizes or affines, a label value dataset.json does not name, no mask) is
// skipped with a warning naming it; a dataset with fewer than 4 usable cases (2 to train, 2 to
// validate) is an InputError naming it.
std::vector<PreparedDataset> load_datasets(const std::vector<DatasetSpec>& specs,
                                           const DatasetLoadOptions& options);

struct DatasetEpisodeOptions {
  std::array<int64_t, 3> patch_size{32, 32, 32};  // [D, H, W]; 2D: [1, S, S]
  int64_t classes_per_episode = 3;
  int64_t min_voxels = 20;               // of a class in the reference patch for it to be used
  double foreground_probability = 0.9;   // query patch centred on the anchor class (else anywhere)
  double class_drop_probability = 0.15;  // each class besides the anchor
  bool augment = false;                  // flips, rotation, scaling, intensity; per image
  double rotation_degrees = 15;          // in the H-W plane
  double scaling = 0.1;                  // zoom factor uniform in [1 - s, 1 + s]
};

struct DatasetEpisode {
  PatchEpisode episode;  // images [C, D, H, W], masks [K, D, H, W]; class_values are label values
  int64_t dataset = -1;  // index into the datasets
};

// Episodes over datasets: a dataset by weight, an anchor class it holds in two cases, a reference
// case and a different query case holding it, patches centred on the anchor (the query's with
// foreground_probability), further classes present in the reference patch. Deterministic given
// the rng.
class DatasetEpisodeSampler {
 public:
  enum class Split { kTrain, kValidation };
  DatasetEpisodeSampler(std::shared_ptr<const std::vector<PreparedDataset>> datasets, Split split,
                        int64_t min_voxels);

  // Classes of dataset d present in at least two cases of the split.
  const std::vector<int64_t>& episode_classes(int64_t d) const { return classes_[d]; }
  // Samples from dataset `only` (or by weight over all when -1).
  DatasetEpisode sample(std::mt19937_64& rng, const DatasetEpisodeOptions& options,
                        int64_t only = -1) const;

 private:
  const std::vector<PreparedCase>& cases(int64_t d) const;
  std::shared_ptr<const std::vector<PreparedDataset>> datasets_;
  Split split_;
  std::vector<std::vector<int64_t>> classes_;                     // per dataset
  std::vector<std::map<int64_t, std::vector<int64_t>>> holders_;  // per dataset: class -> cases
  std::vector<double> weights_;
};

// [C, D, H, W] image and [K, D, H, W] masks transformed by one random draw: flips per axis,
// rotation and scaling in the H-W plane, intensity scale/shift/gamma/noise on z-scored values.
std::pair<at::Tensor, at::Tensor> augment_image_and_masks(const at::Tensor& image,
                                                          const at::Tensor& masks,
                                                          const DatasetEpisodeOptions& options,
                                                          std::mt19937_64& rng);

}  // namespace iris
