// 2D image folders as Kvasir-SEG, ISIC and most 2D sets ship: images/<stem>.<ext> beside
// masks/<stem><suffix>.<ext> (or labels/), PNG/JPEG/TIFF/BMP, RGB or grey. Masks are matched by
// file stem (with an optional suffix such as ISIC's "_segmentation"). A mask whose values are
// {0, 255} (or {0, 1}) is one binary class; a JPEG mask is always binary, thresholded at 128,
// since compression noise would otherwise read as dozens of classes; other masks are indexed
// label maps.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "data/inspect.h"

namespace iris {

struct ImageFolderCase {
  std::string id;  // the image's file stem
  std::filesystem::path image;
  std::filesystem::path mask;  // empty when no mask matched
  int64_t height = 0, width = 0, channels = 0;
  std::map<int64_t, int64_t> class_pixels;  // non-zero label value -> pixel count
  bool ok = false;                          // image and mask read, same size
};

struct ImageFolderDataset {
  std::filesystem::path root;
  std::string mask_suffix;  // as found: "" or e.g. "_segmentation"
  std::vector<ImageFolderCase> cases;
  std::vector<std::string> problems;  // one line each, naming the file
};

// True when `dir` has an images/ folder beside a masks/ or labels/ folder.
bool is_image_folder_dataset_dir(const std::filesystem::path& dir);

// Reads every image and mask (sizes, classes). Problems (mask without image, image without mask,
// unreadable file, size mismatch) are collected, not thrown; InputError only when `dir` is not
// such a folder. `mask_suffix` empty: tried in order "", "_mask", "_segmentation", "_seg",
// "_manual1", "_label", the first that matches any image is used for all.
ImageFolderDataset scan_image_folder(const std::filesystem::path& dir,
                                     const std::string& mask_suffix = "");

// A mask file as a label map [H, W] int64 (binary masks as 0/1), by the rules above.
at::Tensor read_mask_labels(const std::filesystem::path& path);

// A decoded image ([H, W] grey or [H, W, C], as read_image_raw gives it) as [C, H, W] float32,
// colour images with their first three channels (alpha dropped).
at::Tensor image_channels(const at::Tensor& raw);

struct ImageCaseData {
  at::Tensor image;   // [C, H, W] float32 with the stored values (C = 1 grey, 3 RGB)
  at::Tensor labels;  // [H, W] int64
};

// Reads one case; InputError naming the file on any problem.
ImageCaseData load_image_case(const ImageFolderCase& c);

// `iris data inspect` on such a folder.
InspectReport inspect_image_folder(const std::filesystem::path& dir);

}  // namespace iris
