#include "data/image_folder_dataset.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "core/error.h"
#include "data/label_table.h"
#include "io/image_io.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

// Binary JPEG masks: values near 0 and 255 plus compression noise.
constexpr int64_t kJpegThreshold = 128;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_jpeg(const fs::path& path) {
  const std::string ext = lower(path.extension().string());
  return ext == ".jpg" || ext == ".jpeg";
}

fs::path mask_dir(const fs::path& dir) {
  return fs::is_directory(dir / "masks") ? dir / "masks" : dir / "labels";
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

}  // namespace

bool is_image_folder_dataset_dir(const fs::path& dir) {
  return fs::is_directory(dir / "images") &&
         (fs::is_directory(dir / "masks") || fs::is_directory(dir / "labels"));
}

at::Tensor read_mask_labels(const fs::path& path) {
  const at::Tensor raw = read_image_raw(path);
  // Colour masks of a binary class are grey in every channel: any channel non-zero is the class.
  at::Tensor grey =
      raw.dim() == 3
          ? std::get<0>(raw.narrow(2, 0, std::min<int64_t>(3, raw.size(2))).to(at::kLong).max(2))
          : raw.to(at::kLong);
  if (is_jpeg(path)) return (grey >= kJpegThreshold).to(at::kLong);
  const at::Tensor values = std::get<0>(at::_unique(grey.flatten()));
  const bool binary_255 = (values == 0).logical_or(values == 255).all().item<bool>();
  if (binary_255) return (grey == 255).to(at::kLong);
  return grey.contiguous();
}

ImageFolderDataset scan_image_folder(const fs::path& dir, const std::string& mask_suffix) {
  if (!is_image_folder_dataset_dir(dir)) {
    throw InputError(file_message(
        dir.string(), "not a 2D image folder (expected images/ beside masks/ or labels/)"));
  }
  ImageFolderDataset ds;
  ds.root = dir;
  const std::vector<fs::path> images = list_frames(dir / "images");
  const std::vector<fs::path> masks = list_frames(mask_dir(dir));
  std::map<std::string, fs::path> mask_by_stem;
  for (const auto& m : masks) mask_by_stem[m.stem().string()] = m;
  // The suffix: given, or the first candidate that matches any image.
  ds.mask_suffix = mask_suffix;
  if (mask_suffix.empty()) {
    for (const char* candidate : {"", "_mask", "_segmentation", "_seg", "_manual1", "_label"}) {
      const bool any = std::any_of(images.begin(), images.end(), [&](const fs::path& p) {
        return mask_by_stem.count(p.stem().string() + candidate) > 0;
      });
      if (any) {
        ds.mask_suffix = candidate;
        break;
      }
    }
  }
  std::set<std::string> used;
  for (const auto& image : images) {
    ImageFolderCase c;
    c.id = image.stem().string();
    c.image = image;
    const auto it = mask_by_stem.find(c.id + ds.mask_suffix);
    try {
      const at::Tensor pixels = read_image_raw(image);
      c.height = pixels.size(0);
      c.width = pixels.size(1);
      c.channels = pixels.dim() == 3 ? pixels.size(2) : 1;
    } catch (const Error& e) {
      ds.problems.push_back(first_line(e.what()));
      ds.cases.push_back(c);
      continue;
    }
    if (it == mask_by_stem.end()) {
      ds.problems.push_back(
          file_message(image.string(), fmt::format("no mask {}{}.* in {}", c.id, ds.mask_suffix,
                                                   mask_dir(dir).filename().string())));
      ds.cases.push_back(c);
      continue;
    }
    c.mask = it->second;
    used.insert(it->first);
    try {
      const at::Tensor labels = read_mask_labels(c.mask);
      if (labels.size(0) != c.height || labels.size(1) != c.width) {
        ds.problems.push_back(file_message(
            c.mask.string(), fmt::format("mask of {} x {} pixels differs from its image's {} x {}",
                                         labels.size(1), labels.size(0), c.width, c.height)));
      } else {
        c.class_pixels = label_counts(labels);
        c.ok = true;
      }
    } catch (const Error& e) {
      ds.problems.push_back(first_line(e.what()));
    }
    ds.cases.push_back(c);
  }
  for (const auto& [stem, file] : mask_by_stem) {
    if (!used.count(stem))
      ds.problems.push_back(file_message(file.string(), "mask without an image in images/"));
  }
  if (images.empty()) ds.problems.push_back(file_message((dir / "images").string(), "no images"));
  return ds;
}

at::Tensor image_channels(const at::Tensor& raw) {
  if (raw.dim() == 2) return raw.unsqueeze(0).to(at::kFloat);
  return raw.narrow(2, 0, std::min<int64_t>(3, raw.size(2)))
      .permute({2, 0, 1})
      .to(at::kFloat)
      .contiguous();
}

ImageCaseData load_image_case(const ImageFolderCase& c) {
  if (c.mask.empty()) throw InputError(file_message(c.image.string(), "the image has no mask"));
  ImageCaseData out;
  out.image = image_channels(read_image_raw(c.image));
  out.labels = read_mask_labels(c.mask);
  if (out.labels.size(0) != out.image.size(1) || out.labels.size(1) != out.image.size(2)) {
    throw InputError(file_message(c.mask.string(), "mask size differs from its image's"));
  }
  return out;
}

InspectReport inspect_image_folder(const fs::path& dir) {
  const ImageFolderDataset ds = scan_image_folder(dir);
  InspectReport r;
  r.layout = "2D image folder (images/ + masks/)";
  int64_t labelled = 0, grey = 0, colour = 0;
  std::map<int64_t, int64_t> totals;
  int64_t min_side = 0, max_side = 0;
  for (const auto& c : ds.cases) {
    labelled += c.ok;
    if (c.channels == 1) ++grey;
    if (c.channels >= 3) ++colour;
    if (c.height > 0) {
      const int64_t lo = std::min(c.height, c.width), hi = std::max(c.height, c.width);
      min_side = min_side == 0 ? lo : std::min(min_side, lo);
      max_side = std::max(max_side, hi);
    }
    for (const auto& [v, n] : c.class_pixels) totals[v] += n;
  }
  r.facts.push_back(fmt::format("images: {} ({} with a usable mask; {} grey, {} colour)",
                                ds.cases.size(), labelled, grey, colour));
  r.facts.push_back(fmt::format("sides: {} to {} pixels", min_side, max_side));
  r.facts.push_back(fmt::format("masks matched by stem{}", ds.mask_suffix.empty()
                                                               ? std::string()
                                                               : " + '" + ds.mask_suffix + "'"));
  for (const auto& [v, n] : totals) {
    r.classes.push_back(
        {"masks", v, totals.size() == 1 ? "foreground" : fmt::format("label_{}", v), n});
  }
  r.problems = ds.problems;
  return r;
}

}  // namespace iris
