#include "data/nifti_dataset.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>

#include "core/error.h"
#include "data/label_table.h"
#include "io/nifti.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

constexpr double kAffineTolerance = 1e-3;  // mm; headers store float32

std::string stem_of(const fs::path& file) {
  std::string name = file.filename().string();
  name.resize(name.size() - nifti_extension(name).size());
  return name;
}

// Case id of an image file name: extension and nnU-Net's "_0000" channel suffix removed.
std::string case_id(const fs::path& file, bool* channel_suffix) {
  std::string name = file.filename().string();
  name.resize(name.size() - nifti_extension(name).size());
  *channel_suffix = name.size() > 5 && name[name.size() - 5] == '_' &&
                    std::all_of(name.end() - 4, name.end(),
                                [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (*channel_suffix) name.resize(name.size() - 5);
  return name;
}

std::vector<fs::path> nifti_files(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name[0] != '.' && !nifti_extension(name).empty()) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::map<int64_t, std::string> read_label_names(const fs::path& file,
                                                std::vector<std::string>& problems) {
  std::map<int64_t, std::string> names;
  try {
    std::ifstream in(file);
    const nlohmann::json j = nlohmann::json::parse(in);
    if (!j.contains("labels") || !j["labels"].is_object()) {
      problems.push_back(file_message(file.string(), "no \"labels\" object"));
      return names;
    }
    for (const auto& [key, value] : j["labels"].items()) {
      if (value.is_string()) {  // MSD: "1": "liver"
        names[std::stoll(key)] = value.get<std::string>();
      } else if (value.is_number_integer()) {  // nnU-Net v2: "liver": 1
        names[value.get<int64_t>()] = key;
      } else {
        problems.push_back(
            file_message(file.string(), "label '" + key + "' is neither a name nor a value"));
      }
    }
  } catch (const std::exception& e) {
    problems.push_back(file_message(file.string(), std::string("not valid JSON: ") + e.what()));
  }
  names.erase(0);
  return names;
}

bool same_affine(const Affine& a, const Affine& b) {
  for (int i = 0; i < 16; ++i) {
    if (std::abs(a.m[i] - b.m[i]) > kAffineTolerance) return false;
  }
  return true;
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

}  // namespace

std::string NiftiDataset::class_name(int64_t value) const {
  const auto it = label_names.find(value);
  return it == label_names.end() ? fmt::format("label_{}", value) : it->second;
}

bool is_nifti_dataset_dir(const fs::path& dir) {
  return fs::is_directory(dir / "imagesTr");
}

NiftiDataset scan_nifti_dataset(const fs::path& dir) {
  if (!is_nifti_dataset_dir(dir)) {
    throw InputError(
        file_message(dir.string(), "not an imagesTr/labelsTr NIfTI tree (no imagesTr folder)"));
  }
  NiftiDataset ds;
  ds.root = dir;
  if (fs::exists(dir / "dataset.json"))
    ds.label_names = read_label_names(dir / "dataset.json", ds.problems);
  std::map<std::string, fs::path> labels;
  for (const auto& f : nifti_files(dir / "labelsTr")) labels[stem_of(f)] = f;  // no channel suffix
  if (!fs::is_directory(dir / "labelsTr")) {
    ds.problems.push_back(
        file_message((dir / "labelsTr").string(), "missing: no labels for any case"));
  }
  std::set<std::string> seen;
  for (const auto& image_file : nifti_files(dir / "imagesTr")) {
    NiftiCase c;
    bool suffix = false;
    c.id = case_id(image_file, &suffix);
    if (suffix) {
      // An MSD id may itself end in four digits ("x_0001" with label "x_0001").
      const std::string stem = stem_of(image_file);
      if (!labels.count(c.id) && labels.count(stem)) {
        c.id = stem;
        suffix = false;
      }
    }
    if (suffix && seen.count(c.id)) continue;  // further channels of a multi-channel case
    seen.insert(c.id);
    c.image = image_file;
    Volume image;
    try {
      image = read_nifti(image_file);
      c.shape = {image.ni(), image.nj(), image.nk()};
      c.spacing = image.affine.spacing();
    } catch (const InputError& e) {
      ds.problems.push_back(first_line(e.what()));
      ds.cases.push_back(c);
      continue;
    }
    const auto it = labels.find(c.id);
    if (it == labels.end()) {
      ds.problems.push_back(
          file_message(image_file.string(), "no label file labelsTr/" + c.id + ".nii.gz"));
      ds.cases.push_back(c);
      continue;
    }
    c.label = it->second;
    try {
      const Volume label = read_nifti(c.label);
      if (label.data.sizes() != image.data.sizes()) {
        ds.problems.push_back(file_message(
            c.label.string(),
            fmt::format("label shape {} x {} x {} differs from image shape {} x {} x {}",
                        label.ni(), label.nj(), label.nk(), image.ni(), image.nj(), image.nk())));
      } else if (!same_affine(label.affine, image.affine)) {
        ds.problems.push_back(
            file_message(c.label.string(), "label affine differs from the image's"));
      } else if (at::isFloatingType(label.data.scalar_type()) &&
                 !at::equal(label.data, label.data.round())) {
        ds.problems.push_back(file_message(c.label.string(), "label map has non-integer values"));
      } else {
        c.class_voxels = label_counts(label.data);
        c.ok = true;
      }
    } catch (const InputError& e) {
      ds.problems.push_back(first_line(e.what()));
    }
    ds.cases.push_back(c);
  }
  for (const auto& [id, file] : labels) {
    if (!seen.count(id))
      ds.problems.push_back(file_message(file.string(), "label without an image in imagesTr"));
  }
  if (ds.cases.empty())
    ds.problems.push_back(file_message((dir / "imagesTr").string(), "no NIfTI images"));
  return ds;
}

std::pair<Volume, Volume> load_nifti_case(const NiftiCase& c) {
  if (c.label.empty())
    throw InputError(file_message(c.image.string(), "case '" + c.id + "' has no label file"));
  Volume image = read_nifti(c.image);
  Volume label = read_nifti(c.label);
  if (label.data.sizes() != image.data.sizes() || !same_affine(label.affine, image.affine)) {
    throw InputError(file_message(
        c.label.string(), "label map is not on the grid of " + c.image.filename().string()));
  }
  return {std::move(image), std::move(label)};
}

InspectReport inspect_nifti_dataset(const fs::path& dir) {
  const NiftiDataset ds = scan_nifti_dataset(dir);
  InspectReport r;
  r.layout = "NIfTI imagesTr/labelsTr (MSD / nnU-Net)";
  int64_t labelled = 0;
  std::set<std::array<int64_t, 3>> shapes;
  std::set<std::string> spacings;
  std::map<int64_t, int64_t> totals;
  for (const auto& c : ds.cases) {
    labelled += c.ok;
    if (c.shape[0] > 0) {
      shapes.insert(c.shape);
      spacings.insert(
          fmt::format("{:.3g} x {:.3g} x {:.3g} mm", c.spacing[0], c.spacing[1], c.spacing[2]));
    }
    for (const auto& [v, n] : c.class_voxels) totals[v] += n;
  }
  r.facts.push_back(
      fmt::format("volumes: {} ({} with a usable label map)", ds.cases.size(), labelled));
  std::string sizes;
  for (const auto& s : shapes)
    sizes += fmt::format("{}{} x {} x {}", sizes.empty() ? "" : ", ", s[0], s[1], s[2]);
  r.facts.push_back("sizes: " + (sizes.empty() ? std::string("none readable") : sizes));
  std::string spacing;
  for (const auto& s : spacings) spacing += (spacing.empty() ? "" : ", ") + s;
  r.facts.push_back("spacing: " + (spacing.empty() ? std::string("none readable") : spacing));
  r.facts.push_back(fmt::format("label names: {}", ds.label_names.empty()
                                                       ? std::string("none (no dataset.json)")
                                                       : std::to_string(ds.label_names.size())));
  for (const auto& [v, n] : totals) r.classes.push_back({"labels", v, ds.class_name(v), n});
  for (const auto& [v, name] : ds.label_names) {
    if (!totals.count(v) && labelled > 0) {
      r.problems.push_back(
          fmt::format("dataset.json: '{}' ({}) has no voxels in any label map", name, v));
    }
  }
  r.problems.insert(r.problems.begin(), ds.problems.begin(), ds.problems.end());
  return r;
}

}  // namespace iris
