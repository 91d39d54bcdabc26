// IRIS on files: `iris predict iris` (labelled reference files + a query file -> masks in the
// query's own form) and `iris eval iris` (every case of a pool as a query, the other cases as
// references, per-class Dice per strategy).
//   2D model, PNG/JPEG images   images padded square and resized to the training slice size, as in
//                               training; masks written as PNG label maps at the query's size
//   2D model, NIfTI volumes     slice mode: the reference is the axial slice (k) holding the most
//                               voxels of the classes, every query slice is segmented
//   3D model, NIfTI volumes     whole volumes; the query through the sliding window
// NIfTI masks keep the query's voxel grid, affine and form codes, so they overlay in viewers.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "data/preprocess.h"
#include "models/iris/inference.h"

namespace iris {

struct IrisPredictOptions {
  models::Strategy strategy = models::Strategy::kOneShot;
  // Label values of the reference masks to segment; empty: every non-zero value of the first
  // reference mask.
  std::vector<int64_t> classes;
  // Class names (memory-bank retrieval, reports); empty: the label values.
  std::vector<std::string> class_names;
  int64_t slice_size = 96;              // 2D models: the training slice size
  models::SlidingWindowOptions window;  // 3D models
  models::TuningOptions tuning;
  models::RetrievalOptions retrieval;
  // Retrieval from the checkpoint's memory bank instead of an index over the references.
  const models::MemoryBank* bank = nullptr;
  std::string bank_dataset;
  // Models trained on data.datasets see images through data/preprocess.h (RAS, spacing, crop,
  // intensity by modality) and masks go back onto the query's grid; off: the atlas models'
  // [0, 1] intensities on the stored grid.
  bool prepare = false;
  PreprocessOptions preprocess;
  Modality modality = Modality::kMR;  // the training data's (image folders: kOther)
  int64_t in_channels = 1;
  // Also write the label map on the prepared grid (mask_prepared.nii.gz, with that grid's affine).
  bool write_prepared = false;
};

struct ReferenceFiles {
  std::filesystem::path image;
  std::filesystem::path mask;  // label map on the image's grid
};

struct IrisPrediction {
  std::string mode;  // "2d-image", "2d-slices" or "3d-volume"
  std::vector<int64_t> classes;
  std::vector<int64_t> voxels;  // predicted voxels per class in the label map
  at::Tensor labels;            // label map on the query's grid ([H, W] or [nk, nj, ni]), int64
  double load_ms = 0, task_ms = 0, segment_ms = 0, total_ms = 0;
  std::vector<std::filesystem::path> written;
};

// Segments `query` with the references. With `out` non-empty, writes the label map there
// (mask.png or mask.nii.gz) and prediction.json. InputError for unreadable files, a query among
// its references, mixed kinds of files, or classes absent from every reference.
IrisPrediction predict_iris(models::IrisModel& model, const std::vector<ReferenceFiles>& references,
                            const std::filesystem::path& query, const IrisPredictOptions& options,
                            const std::filesystem::path& out = {});

struct IrisEvalOptions {
  std::vector<models::Strategy> strategies{models::Strategy::kOneShot, models::Strategy::kEnsemble,
                                           models::Strategy::kRetrieval, models::Strategy::kTuning};
  int64_t references = 3;      // the next k cases of the pool (cyclically) are a query's references
  int64_t max_queries = 0;     // 0: every case
  IrisPredictOptions predict;  // strategy is set per run
  double nsd_tolerance = 2.0;  // NSD tolerance in mm (2D images: pixels)
  // Baselines scored on the same queries: the first reference's label map copied onto the query
  // (where both share a grid), and one-shot with the untrained network.
  bool copy_baseline = true;
  models::IrisModel* untrained = nullptr;
};

struct IrisEvalResult {
  std::string dataset;  // the pool folder's name
  std::vector<int64_t> classes;
  std::vector<std::string> class_names;
  std::vector<std::string> strategies;  // rows: the strategies, then the baselines
  std::vector<std::string> queries;
  // [row][class]: means over the queries where the class is present (NaN when in none); Dice and
  // NSD count every such query, HD95 only those where the prediction is not empty (HD95 is
  // undefined otherwise; hd95_counts says how many).
  std::vector<std::vector<double>> dice, hd95, nsd;
  std::vector<std::vector<int64_t>> counts, hd95_counts;
  std::vector<double> seconds;  // mean time per query (0 for the copied reference)
};

// A pool: an MSD/nnU-Net tree (imagesTr/labelsTr) or a folder of images with masks in a
// "masks" (or "labels") subfolder under the same file names.
IrisEvalResult evaluate_iris(models::IrisModel& model, const std::filesystem::path& pool,
                             const IrisEvalOptions& options);
nlohmann::json iris_eval_json(const IrisEvalResult& result, const IrisEvalOptions& options);
std::string iris_eval_markdown(const IrisEvalResult& result, const IrisEvalOptions& options);

}  // namespace iris
