#include "data/dataset_episodes.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "core/build_info.h"
#include "core/config.h"
#include "core/error.h"
#include "data/image_folder_dataset.h"
#include "data/label_table.h"
#if IRIS_HAVE_NIFTI
#include "data/nifti_dataset.h"
#include "io/nifti.h"
#endif

namespace iris {
namespace {

namespace fs = std::filesystem;

// Usable cases a dataset needs: two to train (reference + query), two to validate.
constexpr std::size_t kMinCases = 4;

int64_t pick(std::mt19937_64& rng, int64_t n) {
  return std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
}

double uniform(std::mt19937_64& rng, double a, double b) {
  return std::uniform_real_distribution<double>(a, b)(rng);
}

// FNV-1a: a split that depends on the case id only, the same on every platform and run.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

std::string folder_name(const fs::path& root) {
  return (root.has_filename() ? root.filename() : root.parent_path().filename()).string();
}

}  // namespace

std::string dataset_json_modality(const fs::path& root) {
  const fs::path file = root / "dataset.json";
  if (!fs::exists(file)) return "";
  try {
    std::ifstream in(file);
    const nlohmann::json j = nlohmann::json::parse(in);
    for (const char* key : {"modality", "channel_names"}) {
      if (j.contains(key) && j[key].is_object() && j[key].contains("0") && j[key]["0"].is_string())
        return j[key]["0"].get<std::string>();
    }
  } catch (const std::exception&) {
    // The tree scan reports a broken dataset.json.
  }
  return "";
}

std::vector<DatasetSpec> resolve_dataset_specs(std::vector<DatasetSpec> specs) {
  for (auto& spec : specs) {
    if (spec.name.empty()) spec.name = folder_name(spec.path);
    if (spec.modality.empty()) {
      spec.modality = dataset_json_modality(spec.path);
      if (spec.modality.empty()) {
        spec.modality = is_image_folder_dataset_dir(spec.path) ? "other" : "MR";
      }
    }
  }
  return specs;
}

namespace {

void check_classes(const DatasetSpec& spec, const std::string& name) {
  for (int64_t v : spec.classes) {
    if (std::find(spec.exclude_classes.begin(), spec.exclude_classes.end(), v) !=
        spec.exclude_classes.end()) {
      throw ConfigError(
          fmt::format("data.datasets '{}': class {} is both in classes and in "
                      "exclude_classes",
                      name, v));
    }
    if (v <= 0)
      throw ConfigError(
          fmt::format("data.datasets '{}': class {} is not a label value "
                      "(values start at 1)",
                      name, v));
  }
}

#if IRIS_HAVE_NIFTI
// The case's channel files: nnU-Net's <case>_0000, _0001, ... beside the first, or the one file.
std::vector<fs::path> channel_files(const NiftiCase& c) {
  std::vector<fs::path> files{c.image};
  const std::string ext = nifti_extension(c.image.string());
  const std::string name = c.image.filename().string();
  const std::string stem = name.substr(0, name.size() - ext.size());
  if (stem.size() < 5 || stem.compare(stem.size() - 5, 5, "_0000") != 0) return files;
  for (int channel = 1;; ++channel) {
    const fs::path next = c.image.parent_path() /
                          fmt::format("{}_{:04d}{}", stem.substr(0, stem.size() - 5), channel, ext);
    if (!fs::exists(next)) break;
    files.push_back(next);
  }
  return files;
}

void load_nifti_tree(const DatasetSpec& spec, const DatasetLoadOptions& options,
                     PreparedDataset& ds, std::vector<PreparedCase>& cases) {
  const NiftiDataset tree = scan_nifti_dataset(spec.path);
  ds.layout = "nifti";
  ds.label_names = tree.label_names;
  const std::string modality =
      spec.modality.empty() ? dataset_json_modality(spec.path) : spec.modality;
  ds.modality = modality.empty() ? Modality::kMR : parse_modality(modality);
  for (const auto& p : tree.problems) ds.warnings.push_back(p);
  for (const auto& c : tree.cases) {
    if (!c.ok) continue;  // its problem is among the tree's
    std::vector<int64_t> unnamed;
    for (const auto& [v, n] : c.class_voxels) {
      if ((!ds.label_names.empty() && !ds.label_names.count(v)) || v < 0 || v > kMaxLabelValue)
        unnamed.push_back(v);
    }
    if (!unnamed.empty()) {
      ds.warnings.push_back(file_message(
          c.label.string(),
          fmt::format("label value(s) {} not in dataset.json (or outside 1..2^31-1); case skipped",
                      fmt::join(unnamed, ", "))));
      continue;
    }
    try {
      auto [image, labels] = load_nifti_case(c);
      const auto files = channel_files(c);
      if (files.size() > 1) {
        std::vector<at::Tensor> channels{image.data.to(at::kFloat)};
        for (std::size_t f = 1; f < files.size(); ++f) {
          const Volume v = read_nifti(files[f]);
          if (v.data.sizes() != image.data.sizes()) {
            throw InputError(
                file_message(files[f].string(), "channel not on the grid of channel 0"));
          }
          channels.push_back(v.data.to(at::kFloat));
        }
        image.data = at::stack(channels);
      }
      const int64_t channels = image.data.dim() == 4 ? image.data.size(0) : 1;
      if (channels != options.in_channels) {
        throw InputError(
            file_message(c.image.string(), fmt::format("has {} channel(s); model.in_channels is {}",
                                                       channels, options.in_channels)));
      }
      PreparedVolume p = prepare_volume(image, &labels, ds.modality, options.preprocess);
      const double background = p.image.min().item<double>();
      cases.push_back({c.id, std::move(p.image), std::move(p.labels), background});
    } catch (const InputError& e) {
      ds.warnings.push_back(first_line(e.what()) + "; case skipped");
    }
  }
}
#endif

void load_image_folder(const DatasetSpec& spec, const DatasetLoadOptions& options,
                       PreparedDataset& ds, std::vector<PreparedCase>& cases) {
  const ImageFolderDataset folder = scan_image_folder(spec.path, spec.mask_suffix);
  ds.layout = "images";
  ds.modality = spec.modality.empty() ? Modality::kOther : parse_modality(spec.modality);
  for (const auto& p : folder.problems) ds.warnings.push_back(p);
  for (const auto& c : folder.cases) {
    if (!c.ok) continue;
    try {
      const ImageCaseData data = load_image_case(c);
      const at::Tensor image = with_channels(data.image, options.in_channels, c.image.string());
      // As `iris predict iris` prepares an image: normalised, then padded square with its lowest
      // value and resized.
      const at::Tensor normalised = normalize_intensity(image, ds.modality, options.preprocess);
      const double background = normalised.min().item<double>();
      const SquareFrame f = square_frame(image.size(1), image.size(2));
      const at::Tensor square =
          to_square(normalised, f, options.image_size, false, background);  // [C, S, S]
      const at::Tensor labels =
          to_square(data.labels.unsqueeze(0), f, options.image_size, true).to(at::kLong);
      cases.push_back({c.id, square.unsqueeze(1), labels.contiguous(),  // [C, 1, S, S], [1, S, S]
                       background});
    } catch (const InputError& e) {
      ds.warnings.push_back(first_line(e.what()) + "; case skipped");
    }
  }
}

// Corner of a patch of `size` centred on `centre`, inside [0, extent) when it fits.
int64_t corner(int64_t centre, int64_t size, int64_t extent) {
  if (extent <= size) return 0;
  return std::clamp<int64_t>(centre - size / 2, 0, extent - size);
}

// x [..., D, H, W] cropped at `origin` and zero-padded to `size` (the last three dims).
at::Tensor crop(const at::Tensor& x, const std::array<int64_t, 3>& origin,
                const std::array<int64_t, 3>& size, double fill) {
  const int64_t lead = x.dim() - 3;
  at::Tensor out = x;
  for (int64_t d = 0; d < 3; ++d) {
    out = out.slice(lead + d, origin[d], std::min(origin[d] + size[d], x.size(lead + d)));
  }
  return at::constant_pad_nd(
      out, {0, size[2] - out.size(-1), 0, size[1] - out.size(-2), 0, size[0] - out.size(-3)}, fill);
}

// Patch origin centred on a random voxel of class `value` (or anywhere when value is 0).
std::array<int64_t, 3> patch_origin(std::mt19937_64& rng, const at::Tensor& labels, int64_t value,
                                    const std::array<int64_t, 3>& size) {
  std::array<int64_t, 3> centre{};
  if (value > 0) {
    const at::Tensor voxels = (labels == value).nonzero();  // [N, 3]
    TORCH_CHECK(voxels.size(0) > 0, "dataset episode: class ", value, " has no voxels");
    const at::Tensor v = voxels[pick(rng, voxels.size(0))];
    for (int64_t d = 0; d < 3; ++d) centre[d] = v[d].item<int64_t>();
  } else {
    for (int64_t d = 0; d < 3; ++d) centre[d] = pick(rng, labels.size(d));
  }
  std::array<int64_t, 3> origin{};
  for (int64_t d = 0; d < 3; ++d) origin[d] = corner(centre[d], size[d], labels.size(d));
  return origin;
}

}  // namespace

void DatasetSpec::visit(ConfigVisitor& v) {
  v.field("path", path, "an MSD/nnU-Net tree (imagesTr, labelsTr) or a 2D folder (images, masks)");
  v.field("name", name, "memory-bank key and report name ('' -> the folder's name)");
  v.field("weight", weight, "relative chance of an episode from this dataset");
  v.field("modality", modality,
          "CT, MR, PET or other ('' -> dataset.json's; MR for volumes, other for images)");
  v.field("classes", classes, "label values to train on ([] -> all)");
  v.field("exclude_classes", exclude_classes, "label values never trained (held out)");
  v.field("mask_suffix", mask_suffix, "2D folders: mask stem = image stem + this ('' -> found)");
}

std::string PreparedDataset::class_name(int64_t value) const {
  const auto it = label_names.find(value);
  if (it != label_names.end()) return it->second;
  if (layout == "images" && classes.size() == 1 && value == 1) return "foreground";
  return fmt::format("label_{}", value);
}

std::vector<PreparedDataset> load_datasets(const std::vector<DatasetSpec>& specs,
                                           const DatasetLoadOptions& options) {
  if (specs.empty()) throw ConfigError("data.datasets: give at least one dataset");
  std::vector<PreparedDataset> out;
  std::set<std::string> names;
  for (const auto& spec : specs) {
    PreparedDataset ds;
    const fs::path root(spec.path);
    ds.name = spec.name.empty() ? folder_name(root) : spec.name;
    if (!names.insert(ds.name).second) {
      throw ConfigError(
          fmt::format("data.datasets: two datasets named '{}'; give each a name", ds.name));
    }
    if (!(spec.weight > 0)) {
      throw ConfigError(fmt::format("data.datasets '{}': weight must be positive", ds.name));
    }
    check_classes(spec, ds.name);
    ds.weight = spec.weight;
    if (!fs::is_directory(root)) {
      throw InputError(
          file_message(spec.path, fmt::format("dataset '{}': no such folder", ds.name)));
    }
    std::vector<PreparedCase> cases;
    if (is_image_folder_dataset_dir(root)) {
      if (options.spatial_dims != 2) {
        throw ConfigError(fmt::format(
            "data.datasets '{}': a 2D image folder trains a model with spatial_dims: 2", ds.name));
      }
      load_image_folder(spec, options, ds, cases);
    } else {
#if IRIS_HAVE_NIFTI
      if (options.spatial_dims != 3) {
        throw ConfigError(fmt::format(
            "data.datasets '{}': NIfTI volumes train a model with spatial_dims: 3", ds.name));
      }
      load_nifti_tree(spec, options, ds, cases);
#else
      throw NotAvailableError("NIfTI support is off in this build (IRIS_WITH_NIFTI)");
#endif
    }
    if (cases.size() < kMinCases) {
      std::string why;
      for (const auto& w : ds.warnings) why += "\n  " + w;
      throw InputError(file_message(
          spec.path, fmt::format("dataset '{}' has {} usable case(s); training needs at least {} "
                                 "(2 to train, 2 to validate){}",
                                 ds.name, cases.size(), kMinCases, why)));
    }
    // Validation cases: the first by a hash of their ids.
    std::sort(cases.begin(), cases.end(), [](const PreparedCase& a, const PreparedCase& b) {
      const uint64_t ha = fnv1a(a.id), hb = fnv1a(b.id);
      return ha != hb ? ha < hb : a.id < b.id;
    });
    const auto n_val = std::clamp<std::size_t>(
        static_cast<std::size_t>(std::llround(options.validation_fraction * cases.size())), 2,
        cases.size() - 2);
    ds.validation.assign(std::make_move_iterator(cases.begin()),
                         std::make_move_iterator(cases.begin() + n_val));
    ds.train.assign(std::make_move_iterator(cases.begin() + n_val),
                    std::make_move_iterator(cases.end()));
    std::set<int64_t> present;
    for (const auto& c : ds.train) {
      for (const auto& [v, n] : label_counts(c.labels)) present.insert(v);
    }
    for (int64_t v : present) {
      const bool listed =
          spec.classes.empty() ||
          std::find(spec.classes.begin(), spec.classes.end(), v) != spec.classes.end();
      const bool excluded = std::find(spec.exclude_classes.begin(), spec.exclude_classes.end(),
                                      v) != spec.exclude_classes.end();
      if (listed && !excluded) ds.classes.push_back(v);
    }
    ds.excluded = spec.exclude_classes;
    if (ds.classes.empty()) {
      throw InputError(
          file_message(spec.path, fmt::format("dataset '{}': no class left to train (classes [{}], "
                                              "exclude_classes [{}])",
                                              ds.name, fmt::join(spec.classes, ", "),
                                              fmt::join(spec.exclude_classes, ", "))));
    }
    out.push_back(std::move(ds));
  }
  return out;
}

DatasetEpisodeSampler::DatasetEpisodeSampler(
    std::shared_ptr<const std::vector<PreparedDataset>> datasets_in, Split split,
    int64_t min_voxels)
    : datasets_(std::move(datasets_in)), split_(split) {
  const auto& datasets = *datasets_;
  for (std::size_t d = 0; d < datasets.size(); ++d) {
    std::map<int64_t, std::vector<int64_t>> holders;
    const auto& cs = cases(static_cast<int64_t>(d));
    for (std::size_t c = 0; c < cs.size(); ++c) {
      for (const auto& [v, n] : label_counts(cs[c].labels)) {
        if (n >= min_voxels) holders[v].push_back(static_cast<int64_t>(c));
      }
    }
    std::vector<int64_t> classes;
    for (int64_t v : datasets[d].classes) {
      if (holders[v].size() >= 2) classes.push_back(v);
    }
    if (classes.empty()) {
      throw InputError(fmt::format(
          "dataset '{}': no class has {} voxels in two {} cases; lower data.min_area",
          datasets[d].name, min_voxels, split == Split::kTrain ? "training" : "validation"));
    }
    classes_.push_back(std::move(classes));
    holders_.push_back(std::move(holders));
    weights_.push_back(datasets[d].weight);
  }
}

const std::vector<PreparedCase>& DatasetEpisodeSampler::cases(int64_t d) const {
  return split_ == Split::kTrain ? (*datasets_)[d].train : (*datasets_)[d].validation;
}

DatasetEpisode DatasetEpisodeSampler::sample(std::mt19937_64& rng, const DatasetEpisodeOptions& o,
                                             int64_t only) const {
  const auto& size = o.patch_size;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int64_t d =
        only >= 0 ? only
                  : std::discrete_distribution<int64_t>(weights_.begin(), weights_.end())(rng);
    const auto& classes = classes_[d];
    const int64_t anchor = classes[pick(rng, classes.size())];
    const auto& holders = holders_[d].at(anchor);
    const int64_t ref = holders[pick(rng, holders.size())];
    std::vector<int64_t> others;
    for (int64_t c : holders) {
      if (c != ref) others.push_back(c);
    }
    const int64_t query = others[pick(rng, others.size())];
    const PreparedCase& r = cases(d)[ref];
    const PreparedCase& q = cases(d)[query];
    PatchEpisode e;
    e.ref_case = ref;
    e.query_case = query;
    e.ref_origin = patch_origin(rng, r.labels, anchor, size);
    const bool query_on_anchor = uniform(rng, 0, 1) < o.foreground_probability;
    e.query_origin = patch_origin(rng, q.labels, query_on_anchor ? anchor : 0, size);
    const at::Tensor ref_labels = crop(r.labels, e.ref_origin, size, 0);
    const at::Tensor query_labels = crop(q.labels, e.query_origin, size, 0);
    if ((ref_labels == anchor).sum().item<int64_t>() == 0) continue;  // cut by the crop
    e.class_values = {anchor};
    std::vector<int64_t> extra;
    for (int64_t c : classes) {
      if (c != anchor && (ref_labels == c).sum().item<int64_t>() >= o.min_voxels &&
          uniform(rng, 0, 1) >= o.class_drop_probability) {
        extra.push_back(c);
      }
    }
    std::shuffle(extra.begin(), extra.end(), rng);
    for (int64_t c : extra) {
      if (static_cast<int64_t>(e.class_values.size()) >= o.classes_per_episode) break;
      e.class_values.push_back(c);
    }
    // Padding outside the image takes the image's lowest value (air, background).
    e.ref_image = crop(r.image, e.ref_origin, size, r.background);
    e.query_image = crop(q.image, e.query_origin, size, q.background);
    std::vector<at::Tensor> rm, qm;
    for (int64_t c : e.class_values) {
      rm.push_back((ref_labels == c).to(at::kFloat));
      qm.push_back((query_labels == c).to(at::kFloat));
    }
    e.ref_masks = at::stack(rm);
    e.query_masks = at::stack(qm);
    if (o.augment) {
      std::tie(e.ref_image, e.ref_masks) =
          augment_image_and_masks(e.ref_image, e.ref_masks, o, rng);
      std::tie(e.query_image, e.query_masks) =
          augment_image_and_masks(e.query_image, e.query_masks, o, rng);
      // The anchor must still show in the reference after augmentation.
      if (e.ref_masks[0].sum().item<double>() == 0) continue;
    }
    return {std::move(e), d};
  }
  throw InputError("dataset episode sampling: no reference/query pair found in 100 attempts");
}

std::pair<at::Tensor, at::Tensor> augment_image_and_masks(const at::Tensor& image,
                                                          const at::Tensor& masks,
                                                          const DatasetEpisodeOptions& o,
                                                          std::mt19937_64& rng) {
  at::Tensor x = image, m = masks;
  // Flips: every axis longer than one voxel.
  for (int64_t d = 1; d <= 3; ++d) {
    if (x.size(d) > 1 && uniform(rng, 0, 1) < 0.5) {
      x = x.flip({d});
      m = m.flip({d});
    }
  }
  // Rotation and scaling in the H-W plane (output voxel -> input voxel, normalised coordinates).
  const double angle = uniform(rng, -o.rotation_degrees, o.rotation_degrees) * M_PI / 180.0;
  const double zoom = uniform(rng, 1 - o.scaling, 1 + o.scaling);
  if (angle != 0 || zoom != 1) {
    const double c = std::cos(angle) / zoom, s = std::sin(angle) / zoom;
    const int64_t D = x.size(1), H = x.size(2), W = x.size(3);
    // Aspect of the H-W plane, so rotations stay rigid on non-square patches.
    const double a = static_cast<double>(H) / static_cast<double>(W);
    // theta rows: (x=W, y=H, z=D) of the input from the output's normalised coordinates.
    const at::Tensor theta = at::tensor({c, -s * a, 0.0, 0.0,  //
                                         s / a, c, 0.0, 0.0,   //
                                         0.0, 0.0, 1.0, 0.0},
                                        at::kFloat)
                                 .view({1, 3, 4});
    const at::Tensor grid = at::affine_grid_generator(theta, {1, 1, D, H, W}, false);
    const double fill = x.min().item<double>();
    // Padding with the lowest value: shift, sample with zeros, shift back.
    x = at::grid_sampler(x.unsqueeze(0) - fill, grid, 0, 0, false).squeeze(0) + fill;
    m = at::grid_sampler(m.unsqueeze(0), grid, 1, 0, false).squeeze(0);
  }
  // Intensity on z-scored values: scale, shift, gamma on the min-max range, noise.
  x = x * uniform(rng, 0.9, 1.1) + uniform(rng, -0.1, 0.1);
  const double gamma = uniform(rng, 0.8, 1.2);
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  if (hi > lo) x = ((x - lo) / (hi - lo)).pow(gamma) * (hi - lo) + lo;
  const double noise = uniform(rng, 0, 0.05);
  // Noise drawn from the episode's rng (not torch's generator): episodes depend on the rng alone.
  at::Generator generator = at::detail::createCPUGenerator(static_cast<uint64_t>(rng()));
  x = x + noise * at::randn(x.sizes(), generator, x.scalar_type());
  return {x.contiguous(), m.contiguous()};
}

}  // namespace iris
