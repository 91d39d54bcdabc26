#include "data/inspect.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>

#include "core/build_info.h"
#include "core/error.h"
#include "data/image_folder_dataset.h"
#include "data/label_table.h"
#include "data/video_inspect.h"
#include "data/video_dataset.h"
#include "io/volume.h"
#if IRIS_HAVE_NIFTI
#include "data/atlas.h"
#include "data/nifti_dataset.h"
#include "io/nifti.h"
#endif

namespace iris {
namespace {

namespace fs = std::filesystem;

[[maybe_unused]] std::string geometry_fact(const Volume& v) {
  const auto s = v.affine.spacing();
  return fmt::format("{} x {} x {} voxels of {:.3g} x {:.3g} x {:.3g} mm, orientation {}, {}", v.ni(),
                     v.nj(), v.nk(), s[0], s[1], s[2], orientation_codes(v.affine),
                     c10::toString(v.data.scalar_type()));
}

#if IRIS_HAVE_NIFTI
InspectReport inspect_atlas(const fs::path& dir) {
  InspectReport r;
  r.layout = "mricron atlases";
  const MricronAtlas atlas = load_mricron_atlas(dir);
  r.facts.push_back("image: ch2bet (Colin27 T1, skull-stripped): " + geometry_fact(atlas.image));
  const auto brain = atlas.image.data > 0;
  r.facts.push_back(fmt::format("brain voxels (ch2bet > 0): {}", brain.sum().item<int64_t>()));
  for (const auto& map : atlas.label_maps) {
    const auto counts = label_counts(map.labels.data);
    const auto outside = ((map.labels.data > 0) & brain.logical_not()).sum().item<int64_t>();
    r.facts.push_back(fmt::format("{}: {} classes{}, {} names in its table, {:.1f}% of labelled "
                                  "voxels on the brain",
                                  map.name, counts.size(),
                                  map.resampled ? " (resampled onto ch2bet through the affines)" : "",
                                  map.table.names.size(),
                                  100.0 * (1.0 - double(outside) /
                                                     std::max<int64_t>(1, (map.labels.data > 0).sum().item<int64_t>()))));
    for (const auto& [value, count] : counts) {
      r.classes.push_back({map.name, value, map.class_name(value), count});
      if (!map.table.names.empty() && !map.table.names.count(value)) {
        r.problems.push_back(fmt::format("{}: label {} has no name in its table", map.name, value));
      }
    }
    for (const auto& [value, name] : map.table.names) {
      if (!counts.count(value)) {
        r.problems.push_back(fmt::format("{}: '{}' ({}) is named in the table but has no voxels{}",
                                         map.name, name, value,
                                         map.resampled ? " after resampling" : ""));
      }
    }
  }
  return r;
}

InspectReport inspect_nifti(const fs::path& file) {
  InspectReport r;
  r.layout = "NIfTI volume";
  const Volume v = read_nifti(file);
  r.facts.push_back(geometry_fact(v));
  if (v.data.dim() == 4) r.facts.push_back(fmt::format("{} time points", v.data.size(0)));
  const auto d = v.data.to(at::kDouble);
  r.facts.push_back(fmt::format("values: min {:.6g}, max {:.6g}, mean {:.6g}", d.min().item<double>(),
                                d.max().item<double>(), d.mean().item<double>()));
  if (!at::isFloatingType(v.data.scalar_type())) {
    const auto counts = label_counts(v.data);
    if (counts.size() <= 1000) {
      for (const auto& [value, count] : counts) {
        r.classes.push_back({"labels", value, "label_" + std::to_string(value), count});
      }
    }
  }
  return r;
}
#endif

}  // namespace

std::string InspectReport::to_text(std::size_t max_classes_per_group) const {
  std::string out = fmt::format("layout: {}\n", layout);
  for (const auto& f : facts) out += "  " + f + "\n";
  if (!classes.empty()) {
    out += "classes:\n";
    std::map<std::string, std::size_t> shown;
    std::map<std::string, std::size_t> total;
    for (const auto& c : classes) ++total[c.group];
    for (const auto& c : classes) {
      if (shown[c.group]++ < max_classes_per_group) {
        out += fmt::format("  {:<20} {:>6}  {:<36} {:>10}\n", c.group, c.value, c.name, c.count);
      }
    }
    for (const auto& [group, n] : total) {
      if (n > max_classes_per_group) {
        out += fmt::format("  {:<20} ... {} more (use --all)\n", group, n - max_classes_per_group);
      }
    }
  }
  out += fmt::format("problems: {}\n", problems.empty() ? "none" : std::to_string(problems.size()));
  for (const auto& p : problems) out += "  - " + p + "\n";
  return out;
}

nlohmann::json InspectReport::to_json() const {
  nlohmann::json j{{"layout", layout}, {"facts", facts}, {"problems", problems}};
  j["classes"] = nlohmann::json::array();
  for (const auto& c : classes) {
    j["classes"].push_back({{"group", c.group}, {"value", c.value}, {"name", c.name}, {"count", c.count}});
  }
  return j;
}

InspectReport inspect_path(const fs::path& path) {
  if (!fs::exists(path)) throw InputError(file_message(path.string(), "no such file or folder"));
  // Surgical video layouts (CholecSeg8k, EndoVis17/18, COCO-video JSON).
  if (detect_video_layout(path)) return inspect_video_dataset(path);
  // 2D image folders (Kvasir-SEG, ISIC, ...): images/ beside masks/ or labels/.
  if (fs::is_directory(path) && is_image_folder_dataset_dir(path)) return inspect_image_folder(path);
#if IRIS_HAVE_NIFTI
  if (fs::is_directory(path) && is_mricron_atlas_dir(path)) return inspect_atlas(path);
  // MSD / nnU-Net imagesTr/labelsTr trees.
  if (fs::is_directory(path) && is_nifti_dataset_dir(path)) return inspect_nifti_dataset(path);
  if (fs::is_regular_file(path) && !nifti_extension(path.string()).empty()) return inspect_nifti(path);
#else
  if (!nifti_extension(path.string()).empty() || fs::is_directory(path)) {
    throw NotAvailableError("NIfTI support is off in this build (IRIS_WITH_NIFTI)");
  }
#endif
  throw InputError(file_message(path.string(), "layout not recognised; supported so far: a NIfTI "
                                               "volume (.nii, .nii.gz), the mricron atlases folder, "
                                               "an imagesTr/labelsTr NIfTI tree, "
                                               "a 2D folder of images/ and masks/, "
                                               "CholecSeg8k, EndoVis17, EndoVis18 and COCO-video"));
}

}  // namespace iris
