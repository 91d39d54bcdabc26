#include "train/iris_trainer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include "core/atomic_file.h"
#include "core/device.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/precision.h"
#include "core/progress.h"
#include "core/resources.h"
#include "data/atlas.h"
#include "data/episodes.h"
#include "data/subject_episodes.h"
#include "data/synthetic_subjects.h"
#include "data/synthetic_volume.h"
#include "data/volume_augment.h"
#include "dist/gradient_sync.h"
#include "dist/process_group.h"
#include "dist/sampler.h"
#include "models/iris/iris_model.h"
#include "models/iris/memory_bank.h"
#include "track/tensorboard.h"
#include "train/lamb.h"
#include "train/losses.h"
#include "train/resume.h"
#include "train/schedule.h"

namespace iris {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Batch {
  at::Tensor ref_image, ref_masks, query_image, query_masks;  // [1, ...] each
};

// Pinned, asynchronous copies on CUDA; images in channels-last layout when the model is.
Batch to_device(const Batch& b, const c10::Device& device, bool channels_last) {
  auto image = [&](const at::Tensor& t) {
    const at::Tensor x = iris::to_device(t, device);
    return channels_last ? to_channels_last(x) : x;
  };
  return {image(b.ref_image), iris::to_device(b.ref_masks, device), image(b.query_image),
          iris::to_device(b.query_masks, device)};
}

// One episode as model inputs (on the CPU) and its class values.
struct EpisodeBatch {
  Batch batch;
  std::vector<int64_t> class_values;
};

template <typename E>
EpisodeBatch to_episode_batch(const E& e) {
  return {{e.ref_image.unsqueeze(0), e.ref_masks.unsqueeze(0), e.query_image.unsqueeze(0),
           e.query_masks.unsqueeze(0)},
          e.class_values};
}

// Where a run's episodes come from: 2D atlas slices, 3D patches of synthetic volumes, or the
// users' datasets.
struct EpisodeData {
  std::string summary;  // for the log
  // A training episode; `rng` depends on (seed, step, index) only.
  std::function<EpisodeBatch(std::mt19937_64&)> sample;
  std::vector<EpisodeBatch> validation;  // fixed episodes
  // Episode class values -> the class's name in metrics ("dataset/class" across datasets).
  std::function<std::string(int64_t)> class_name;
  // Episode class values -> the memory bank's (dataset, class) key.
  std::function<std::pair<std::string, std::string>(int64_t)> bank_key;
  // Episode class values -> the dataset's name, for per-dataset validation ("" for one dataset).
  std::function<std::string(int64_t)> dataset_of = [](int64_t) { return std::string(); };
};

// Class values of dataset episodes carry their dataset: index * kDatasetStride + label value
// (exact in the float64 tensors the ranks exchange).
constexpr int64_t kDatasetStride = kMaxLabelValue + 1;

// With data.validation_every_nth_class = n: the classes at positions i % n == 0 of `classes` never
// train and are the validated ones (those of them `validation` holds).
void hold_out_classes(const IrisTrainConfig::Data& d, std::vector<int64_t>& classes,
                      std::vector<int64_t>& validation) {
  if (d.validation_every_nth_class <= 0) return;
  std::vector<int64_t> kept, held;
  for (std::size_t i = 0; i < classes.size(); ++i) {
    (i % d.validation_every_nth_class == 0 ? held : kept).push_back(classes[i]);
  }
  std::vector<int64_t> validated;
  std::set_intersection(validation.begin(), validation.end(), held.begin(), held.end(),
                        std::back_inserter(validated));
  if (kept.empty() || validated.empty()) {
    throw ConfigError(fmt::format(
        "data.validation_every_nth_class = {} leaves {} training and {} validation classes of "
        "{}; both need at least one",
        d.validation_every_nth_class, kept.size(), validated.size(), d.label_map));
  }
  classes = std::move(kept);
  validation = std::move(validated);
}

// Class names from the atlas's label map; the memory bank keys them under the map's name.
void name_atlas_classes(EpisodeData& data, const std::shared_ptr<const MricronAtlas>& atlas,
                        const std::string& label_map) {
  data.class_name = [atlas, label_map](int64_t value) {
    return atlas->label_map(label_map).class_name(value);
  };
  data.bank_key = [class_name = data.class_name, label_map](int64_t value) {
    return std::pair{label_map, class_name(value)};
  };
}

// Axial slices of ch2bet with the training label map, split by slice index.
EpisodeData atlas_episodes(const IrisTrainConfig& config) {
  const auto& d = config.data;
  auto atlas = std::make_shared<const MricronAtlas>(load_mricron_atlas(d.atlas_dir, {d.label_map}));
  const AtlasLabelMap& labels = atlas->label_map(d.label_map);
  std::vector<int64_t> train_slices, val_slices;
  for (int64_t k : nonempty_slices(atlas->image.data)) {
    (k % d.validation_every_nth_slice == 0 ? val_slices : train_slices).push_back(k);
  }
  auto train_data = std::make_shared<const SliceDataset>(atlas->image, labels.labels, train_slices,
                                                         d.slice_size, d.min_area);
  const SliceDataset val_data(atlas->image, labels.labels, val_slices, d.slice_size, d.min_area);
  std::vector<int64_t> classes = train_data->episode_classes();
  std::vector<int64_t> val_classes = val_data.episode_classes();
  hold_out_classes(d, classes, val_classes);
  SliceEpisodeOptions episode_options{d.classes_per_episode, d.min_area, d.absent_query_probability,
                                      d.min_slice_gap};
  SliceEpisodeOptions train_options = episode_options;
  train_options.joint_shift = d.joint_shift;
  train_options.joint_flip = d.joint_flip;
  train_options.composite_probability = d.composite_classes;
  train_options.random_class_probability = d.random_classes;
  EpisodeData data;
  std::mt19937_64 val_rng(static_cast<uint64_t>(config.run.seed) + 1);
  for (int64_t i = 0; i < config.validation.episodes; ++i) {
    data.validation.push_back(
        to_episode_batch(val_data.sample(val_rng, val_classes, episode_options)));
  }
  data.summary = fmt::format(
      "{} train slices, {} validation slices, {} training classes of {}, {} validated ({})",
      train_slices.size(), val_slices.size(), classes.size(), d.label_map, val_classes.size(),
      d.validation_every_nth_class > 0 ? "held-out classes" : "the training classes");
  data.sample = [train_data, classes, train_options](std::mt19937_64& rng) {
    return to_episode_batch(train_data->sample(rng, classes, train_options));
  };
  name_atlas_classes(data, atlas, d.label_map);
  return data;
}

// Seeds of generated subjects: training subjects first, then the validation subjects (the demo's
// evaluation subjects use indices from 500000 on).
uint64_t subject_seed(const IrisTrainConfig::Data& d, int64_t index) {
  return static_cast<uint64_t>(d.subject_seed) * 1000003ULL + static_cast<uint64_t>(index);
}

// 2D slices of subjects generated from the atlas: reference and query slices from different
// subjects at about the same level, AAL (data.label_map) classes, random ellipsoid classes in the
// atlas's space; validation on held-out subjects (and held-out classes with
// data.validation_every_nth_class).
EpisodeData subject_episodes(const IrisTrainConfig& config) {
  const auto& d = config.data;
  auto atlas = std::make_shared<const MricronAtlas>(load_mricron_atlas(d.atlas_dir, {d.label_map}));
  SubjectOptions subject_options;
  subject_options.spacing_mm = d.subject_spacing;
  std::vector<SubjectSlices> train_subjects, val_subjects;
  Progress progress("generate subjects", d.subjects + d.validation_subjects, "subject");
  for (int64_t s = 0; s < d.subjects + d.validation_subjects; ++s) {
    const Subject subject = make_subject(*atlas, subject_options, subject_seed(d, s));
    (s < d.subjects ? train_subjects : val_subjects)
        .push_back(slice_subject(subject, d.label_map, d.slice_size, d.min_area));
    progress.advance();
  }
  progress.finish();
  auto train_data = std::make_shared<const CrossSubjectSampler>(std::move(train_subjects));
  const CrossSubjectSampler val_data(std::move(val_subjects));
  std::vector<int64_t> classes = train_data->episode_classes();
  std::vector<int64_t> val_classes = val_data.episode_classes();
  hold_out_classes(d, classes, val_classes);
  CrossSubjectOptions options;
  options.classes_per_episode = d.classes_per_episode;
  options.min_area = d.min_area;
  options.level_gap = d.level_gap;
  options.absent_query_probability = d.absent_query_probability;
  CrossSubjectOptions train_options = options;
  train_options.random_class_probability = d.random_classes;
  EpisodeData data;
  std::mt19937_64 val_rng(static_cast<uint64_t>(config.run.seed) + 1);
  for (int64_t i = 0; i < config.validation.episodes; ++i) {
    data.validation.push_back(to_episode_batch(val_data.sample(val_rng, val_classes, options)));
  }
  data.summary = fmt::format(
      "{} generated subjects ({} validation), {} training classes of {}, {} validated ({})",
      d.subjects, d.validation_subjects, classes.size(), d.label_map, val_classes.size(),
      d.validation_every_nth_class > 0 ? "held-out classes" : "the training classes");
  data.sample = [train_data, classes, train_options](std::mt19937_64& rng) {
    return to_episode_batch(train_data->sample(rng, classes, train_options));
  };
  name_atlas_classes(data, atlas, d.label_map);
  return data;
}

// 3D patches of synthetic organ-like volumes generated here from data.volume_seed: the first
// data.volumes cases train, the next data.validation_volumes are held out. Reference and query
// patches come from different cases (the PatchEpisode sampler), which one atlas volume cannot
// give without the query being the reference's own structure.
EpisodeData synthetic_volume_episodes(const IrisTrainConfig& config) {
  const auto& d = config.data;
  SyntheticVolumeOptions volume_options;
  volume_options.cases = d.volumes + d.validation_volumes;
  volume_options.size = d.volume_size;
  volume_options.classes = d.volume_classes;
  volume_options.seed = static_cast<uint64_t>(d.volume_seed);
  std::vector<Volume> train_images, train_labels, val_images, val_labels;
  for (int64_t c = 0; c < volume_options.cases; ++c) {
    SyntheticVolumeCase v = make_synthetic_volume(volume_options, c);
    (c < d.volumes ? train_images : val_images).push_back(std::move(v.image));
    (c < d.volumes ? train_labels : val_labels).push_back(std::move(v.labels));
  }
  auto train_data =
      std::make_shared<const VolumeEpisodeSampler>(train_images, train_labels, d.min_area);
  const VolumeEpisodeSampler val_data(val_images, val_labels, d.min_area);
  const std::vector<int64_t> classes = train_data->episode_classes();
  if (classes.empty() || val_data.episode_classes().empty()) {
    throw ConfigError(fmt::format(
        "data: no class has data.min_area = {} voxels in two synthetic volumes; lower it or "
        "enlarge data.volume_size",
        d.min_area));
  }
  const PatchEpisodeOptions patch_options{
      {d.patch_size[0], d.patch_size[1], d.patch_size[2]}, d.classes_per_episode, d.min_area};
  EpisodeData data;
  std::mt19937_64 val_rng(static_cast<uint64_t>(config.run.seed) + 1);
  for (int64_t i = 0; i < config.validation.episodes; ++i) {
    data.validation.push_back(
        to_episode_batch(val_data.sample(val_rng, val_data.episode_classes(), patch_options)));
  }
  data.summary = fmt::format(
      "{} train volumes, {} validation volumes of {}^3 voxels, patches {}, {} classes", d.volumes,
      d.validation_volumes, d.volume_size, fmt::join(d.patch_size, "x"), classes.size());
  data.sample = [train_data, classes, patch_options,
                 augment = d.patch_augment](std::mt19937_64& rng) {
    PatchEpisode e = train_data->sample(rng, classes, patch_options);
    if (augment) e = augment_patch_episode(e, PatchAugmentOptions{}, rng);
    return to_episode_batch(e);
  };
  // The names write_synthetic_volumes gives the labels in dataset.json.
  data.class_name = [](int64_t value) { return fmt::format("organ_{}", value); };
  data.bank_key = [](int64_t value) {
    return std::pair{std::string("synthetic"), fmt::format("organ_{}", value)};
  };
  return data;
}

// The users' datasets (data.datasets), prepared once at run start; training episodes from the
// training cases with augmentation, fixed validation episodes from the held-out cases, spread
// evenly over the datasets.
EpisodeData dataset_episodes(const IrisTrainConfig& config) {
  const auto& d = config.data;
  const auto& o = config.model.options;
  DatasetLoadOptions load_options;
  load_options.spatial_dims = o.spatial_dims;
  load_options.in_channels = o.in_channels;
  load_options.preprocess = d.preprocess;
  load_options.image_size = d.slice_size;
  load_options.validation_fraction = d.validation_fraction;
  load_options.min_voxels = d.min_area;
  auto datasets =
      std::make_shared<const std::vector<PreparedDataset>>(load_datasets(d.datasets, load_options));
  for (const auto& ds : *datasets) {
    for (const auto& w : ds.warnings) spdlog::warn("dataset '{}': {}", ds.name, w);
  }
  auto train_data = std::make_shared<const DatasetEpisodeSampler>(
      datasets, DatasetEpisodeSampler::Split::kTrain, d.min_area);
  const DatasetEpisodeSampler val_data(datasets, DatasetEpisodeSampler::Split::kValidation,
                                       d.min_area);
  DatasetEpisodeOptions train_options;
  train_options.patch_size = o.spatial_dims == 3
                                 ? std::array<int64_t, 3>{d.patch_size[0], d.patch_size[1],
                                                          d.patch_size[2]}
                                 : std::array<int64_t, 3>{1, d.slice_size, d.slice_size};
  train_options.classes_per_episode = d.classes_per_episode;
  train_options.min_voxels = d.min_area;
  train_options.foreground_probability = d.foreground_probability;
  train_options.class_drop_probability = d.class_drop_probability;
  train_options.augment = d.patch_augment;
  train_options.rotation_degrees = d.rotation_degrees;
  train_options.scaling = d.scaling;
  // Validation: every query on its anchor class, all classes kept, no augmentation.
  DatasetEpisodeOptions val_options = train_options;
  val_options.foreground_probability = 1;
  val_options.class_drop_probability = 0;
  val_options.augment = false;
  const bool flat = o.spatial_dims == 2;
  // [C, 1, S, S] -> [C, S, S] in 2D; class values carry their dataset.
  auto to_batch = [flat](DatasetEpisode de) {
    PatchEpisode& e = de.episode;
    if (flat) {
      e.ref_image = e.ref_image.squeeze(1);
      e.ref_masks = e.ref_masks.squeeze(1);
      e.query_image = e.query_image.squeeze(1);
      e.query_masks = e.query_masks.squeeze(1);
    }
    for (auto& v : e.class_values) v += de.dataset * kDatasetStride;
    return to_episode_batch(e);
  };
  EpisodeData data;
  std::mt19937_64 val_rng(static_cast<uint64_t>(config.run.seed) + 1);
  const auto n = static_cast<int64_t>(datasets->size());
  for (int64_t i = 0; i < config.validation.episodes; ++i) {
    data.validation.push_back(to_batch(val_data.sample(val_rng, val_options, i % n)));
  }
  std::string summary;
  for (const auto& ds : *datasets) {
    summary += fmt::format("{}{} ({}, {}, {} train / {} validation cases, {} classes{})",
                           summary.empty() ? "" : "; ", ds.name, ds.layout, to_string(ds.modality),
                           ds.train.size(), ds.validation.size(), ds.classes.size(),
                           ds.excluded.empty() ? ""
                                               : fmt::format(", {} held out", ds.excluded.size()));
  }
  data.summary = summary;
  data.sample = [train_data, train_options, to_batch](std::mt19937_64& rng) {
    return to_batch(train_data->sample(rng, train_options));
  };
  auto split = [](int64_t code) { return std::pair{code / kDatasetStride, code % kDatasetStride}; };
  data.bank_key = [datasets, split](int64_t code) {
    const auto [d, v] = split(code);
    return std::pair{(*datasets)[d].name, (*datasets)[d].class_name(v)};
  };
  data.class_name = [datasets, split](int64_t code) {
    const auto [d, v] = split(code);
    return (*datasets)[d].name + "/" + (*datasets)[d].class_name(v);
  };
  data.dataset_of = [datasets, split](int64_t code) { return (*datasets)[split(code).first].name; };
  return data;
}

}  // namespace

void check_iris_train_config(const IrisTrainConfig& config) {
  const auto& o = config.model.options;
  const auto& d = config.data;
  const int64_t stride = int64_t{1} << o.stages;
  for (const auto& [key, p] : {std::pair{"composite_classes", d.composite_classes},
                                std::pair{"random_classes", d.random_classes}}) {
    if (!(p >= 0 && p <= 1)) {
      throw ConfigError(fmt::format("data.{}: expected a probability in [0, 1], got {}", key, p));
    }
  }
  if (d.validation_every_nth_class < 0) {
    throw ConfigError(fmt::format("data.validation_every_nth_class: expected >= 0, got {}",
                                  d.validation_every_nth_class));
  }
  if (d.source == "datasets") {
    if (d.datasets.empty()) {
      throw ConfigError("data.source: datasets needs data.datasets (a list of {path: ...})");
    }
    if (d.composite_classes > 0 || d.random_classes > 0 || d.validation_every_nth_class > 0) {
      throw ConfigError(
          "data.composite_classes, data.random_classes and data.validation_every_nth_class apply "
          "to atlas slices; datasets hold classes out with data.datasets[].exclude_classes");
    }
    for (const auto& [key, p] : {std::pair{"validation_fraction", d.validation_fraction},
                                  std::pair{"foreground_probability", d.foreground_probability},
                                  std::pair{"class_drop_probability", d.class_drop_probability}}) {
      if (!(p >= 0 && p <= 1)) {
        throw ConfigError(fmt::format("data.{}: expected a value in [0, 1], got {}", key, p));
      }
    }
  }
  if (o.spatial_dims == 2) {
    if (d.source == "datasets") {
      if (d.slice_size % stride != 0) {
        throw ConfigError(fmt::format(
            "data.slice_size {} must be divisible by 2^model.stages = {}", d.slice_size, stride));
      }
      return;
    }
    if (d.source == "subjects") {
      if (d.subjects < 2 || d.validation_subjects < 2) {
        throw ConfigError(fmt::format(
            "data.subjects ({}) and data.validation_subjects ({}) must be at least 2: reference "
            "and query come from different subjects",
            d.subjects, d.validation_subjects));
      }
      if (d.composite_classes > 0) {
        throw ConfigError("data.composite_classes applies to data.source: atlas");
      }
      if (!(d.subject_spacing > 0)) throw ConfigError("data.subject_spacing must be positive");
    } else if (d.source != "atlas") {
      throw ConfigError(fmt::format(
          "data.source: {} is for model.spatial_dims: 3 (2D models train on the atlas, on "
          "generated subjects or on data.datasets image folders)",
          d.source));
    }
    if (d.slice_size % stride != 0) {
      throw ConfigError(fmt::format("data.slice_size {} must be divisible by 2^model.stages = {}",
                                    d.slice_size, stride));
    }
    return;
  }
  if (o.spatial_dims != 3) {
    throw ConfigError(fmt::format("model.spatial_dims: expected 2 or 3, got {}", o.spatial_dims));
  }
  if (d.source == "atlas" || d.source == "subjects") {
    throw ConfigError(
        "model.spatial_dims: 3 trains on data.source: synthetic or datasets (the atlas is one "
        "volume, so a "
        "query patch could only come from the reference's own structure)");
  }
  if (d.patch_size.size() != 3) {
    throw ConfigError(
        fmt::format("data.patch_size: expected [D, H, W], got {} values", d.patch_size.size()));
  }
  for (const int64_t n : d.patch_size) {
    if (n < 1 || n % stride != 0) {
      throw ConfigError(fmt::format("data.patch_size [{}] must be divisible by 2^model.stages = {}",
                                    fmt::join(d.patch_size, ", "), stride));
    }
  }
  if (d.source == "datasets") return;
  if (d.volumes < 2 || d.validation_volumes < 2) {
    throw ConfigError(fmt::format(
        "data.volumes ({}) and data.validation_volumes ({}) must be at least 2: reference and "
        "query patches come from different volumes",
        d.volumes, d.validation_volumes));
  }
  if (d.composite_classes > 0 || d.random_classes > 0 || d.validation_every_nth_class > 0) {
    throw ConfigError(
        "data.composite_classes, data.random_classes and data.validation_every_nth_class apply "
        "to atlas slices "
        "(data.source: atlas); synthetic volumes validate on held-out volumes");
  }
}

namespace {

// at::Tensor masks [B, K, *S] averaged down to the spatial size of `like`.
at::Tensor pool_masks(const at::Tensor& masks, const at::Tensor& like) {
  if (like.dim() == 5) {
    return at::adaptive_avg_pool3d(masks, {like.size(-3), like.size(-2), like.size(-1)});
  }
  return at::adaptive_avg_pool2d(masks, {like.size(-2), like.size(-1)});
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const IrisTrainConfig::Optim& o,
                                                        const std::vector<at::Tensor>& params) {
  if (o.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay).eps(o.eps));
  }
  if (o.name == "lamb") {
    return std::make_unique<Lamb>(params, LambOptions(o.lr)
                                              .weight_decay(o.weight_decay)
                                              .eps(o.eps)
                                              .max_trust_ratio(o.max_trust_ratio)
                                              .max_weight_norm(o.max_weight_norm));
  }
  throw ConfigError(fmt::format("optim.name: expected adamw or lamb, got '{}'", o.name));
}

// Everything a step depends on besides the config; saved after a step, restored on resume.
struct TrainState {
  int64_t step = 0;
  double best_dice = -1;
  int64_t best_step = 0;
  double final_train_loss = 0;
  double seconds = 0;  // training time of the sessions before this one
};

// Written to a string first, then through write_file_atomic, so that a crash leaves the previous
// checkpoint intact.
void save_checkpoint(const models::IrisModel& model, torch::optim::Optimizer& optimizer,
                     const models::MemoryBank& bank, const TrainState& state,
                     const LossScaler* scaler, const fs::path& path) {
  torch::serialize::OutputArchive archive;
  model->save(archive);
  save_optimizer(archive, &optimizer);
  // The schedule is a pure function of the step, so the step is its whole state.
  archive.write("step", torch::tensor(state.step));
  archive.write("state/best_dice", c10::IValue(state.best_dice));
  archive.write("state/best_step", c10::IValue(state.best_step));
  archive.write("state/final_train_loss", c10::IValue(state.final_train_loss));
  archive.write("state/seconds", c10::IValue(state.seconds));
  save_cpu_generator(archive);
  models::save_memory_bank(bank, archive);
  save_scaler(archive, scaler);
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

TrainState load_checkpoint(const fs::path& path, models::IrisModel& model,
                           torch::optim::Optimizer& optimizer, models::MemoryBank& bank,
                           LossScaler* scaler) {
  if (!fs::exists(path)) {
    throw InputError(file_message(path.string(), "no checkpoint to resume from"));
  }
  TrainState state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    model->load(archive);
    load_optimizer(archive, &optimizer);
    at::Tensor step;
    archive.read("step", step);
    state.step = step.item<int64_t>();
    state.best_dice = read_value(archive, "state/best_dice").toDouble();
    state.best_step = read_value(archive, "state/best_step").toInt();
    state.final_train_loss = read_value(archive, "state/final_train_loss").toDouble();
    state.seconds = read_value(archive, "state/seconds").toDouble();
    load_cpu_generator(archive);
    bank = models::load_memory_bank(archive);
    load_scaler(archive, scaler);
  } catch (const c10::Error& e) {
    throw InputError(file_message(path.string(), std::string("not a resumable IRIS checkpoint: ") +
                                                     e.what_without_backtrace()));
  }
  return state;
}

}  // namespace

models::IrisModel load_iris_checkpoint(const std::string& path,
                                       const models::IrisOptions& options) {
  if (!fs::exists(path)) throw InputError(file_message(path, "no such checkpoint"));
  models::IrisModel model(options);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    model->load(archive);
  } catch (const c10::Error& e) {
    throw InputError(
        file_message(path, std::string("does not hold IRIS weights for this configuration: ") +
                               e.what_without_backtrace()));
  }
  return model;
}

void IrisTrainConfig::visit(ConfigVisitor& v) {
  v.section("run", run);
  v.section("model", [&](ConfigVisitor& m) {
    m.choice("name", model.name, {"iris"}, "model family");
    auto& o = model.options;
    m.field("spatial_dims", o.spatial_dims, "2 (slices) or 3 (volumes)");
    m.field("in_channels", o.in_channels, "image channels");
    m.field("base_channels", o.base_channels, "channels at full resolution, doubled per stage");
    m.field("stages", o.stages, "stride-2 downsamplings (inputs divisible by 2^stages)");
    m.field("query_tokens", o.query_tokens, "contextual tokens per class (m)");
    m.field("heads", o.heads, "attention heads");
    m.field("decoder_layers", o.decoder_layers, "bidirectional attention layers in the decoder");
    m.field("deep_supervision", o.deep_supervision, "auxiliary losses at lower resolutions");
    m.field("position_encoding", o.position_encoding,
            "projected sine position encoding added to the deepest features");
    m.field("class_film", o.class_film,
            "per-class upsampling path modulated by each class's summary (FiLM)");
    m.field("prior_features", o.prior_features,
            "Fourier features of the reference prior (0: off; reference and query share a frame)");
    m.field("prior_frequency", o.prior_frequency,
            "std of the prior's frequencies over [-1, 1] coordinates (higher: sharper)");
    m.field("prior_frame", o.prior_frame,
            "the prior follows each image's foreground frame by a learned amount (shift and scale)");
    m.field("prior_frame_init", o.prior_frame_init,
            "that amount at initialisation (0: the grid, 1: the foreground frame)");
    m.field("prior_frame_axes", o.prior_frame_axes,
            "the foreground frame turns with the anatomy's principal axes (rotation)");
  });
  v.section("data", [&](ConfigVisitor& d) {
    d.choice("source", data.source, {"atlas", "subjects", "synthetic", "datasets"},
             "atlas: 2D slices of the atlas; subjects: 2D slices of subjects generated from the "
             "atlas; synthetic: 3D patches of generated volumes; datasets: data.datasets");
    d.field("subjects", data.subjects, "subjects: generated training subjects");
    d.field("validation_subjects", data.validation_subjects,
            "subjects: generated held-out subjects for validation");
    d.field("subject_seed", data.subject_seed, "subjects: seed of the generated subjects");
    d.field("subject_spacing", data.subject_spacing,
            "subjects: mm per voxel of the generated subjects");
    d.field("level_gap", data.level_gap,
            "subjects: query slice within this many slices of the reference slice's level");
    d.section_list("datasets", data.datasets,
                   "data.source: datasets: MSD/nnU-Net trees (3D) or image folders (2D)");
    d.section("preprocess", data.preprocess);
    d.field("validation_fraction", data.validation_fraction,
            "datasets: fraction of each dataset's cases held out for validation (at least 2)");
    d.field("foreground_probability", data.foreground_probability,
            "datasets: chance the query patch is centred on the episode's anchor class");
    d.field("class_drop_probability", data.class_drop_probability,
            "datasets: chance each class besides the anchor is dropped from an episode");
    d.field("rotation_degrees", data.rotation_degrees,
            "datasets: augmentation rotation in the H-W plane, +- degrees");
    d.field("scaling", data.scaling, "datasets: augmentation zoom in [1 - s, 1 + s]");
    d.field("atlas_dir", data.atlas_dir, "mricron templates folder");
    d.choice("label_map", data.label_map,
             {"aal", "brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"},
             "label map whose classes train the model");
    d.field("slice_size", data.slice_size,
            "2D: axial slices and images are padded square and resized to this");
    d.field("classes_per_episode", data.classes_per_episode, "classes per episode (K)");
    d.field("min_area", data.min_area,
            "pixels (3D: voxels) for a class to count as present on a slice (3D: patch)");
    d.field("validation_every_nth_slice", data.validation_every_nth_slice,
            "slices k with k % n == 0 are held out for validation");
    d.field("validation_every_nth_class", data.validation_every_nth_class,
            "classes i % n == 0 of the sorted list never train and are validated (0: off)");
    d.field("composite_classes", data.composite_classes,
            "chance that a training class is a composite: union with a nearby class or cut by a "
            "line");
    d.field("random_classes", data.random_classes,
            "chance that a training class is a random ellipsoid cut to bright, dark or all tissue");
    d.field("absent_query_probability", data.absent_query_probability,
            "chance that a query slice may lack the episode's anchor class");
    d.field("min_slice_gap", data.min_slice_gap,
            "reference and query slices at least this far apart");
    d.field("joint_shift", data.joint_shift,
            "random shift in pixels shared by reference and query (training episodes)");
    d.field("joint_flip", data.joint_flip,
            "random left-right flip shared by reference and query (training episodes)");
    d.field("volumes", data.volumes, "3D: synthetic training volumes");
    d.field("validation_volumes", data.validation_volumes, "3D: held-out synthetic volumes");
    d.field("volume_size", data.volume_size, "3D: voxels per side of a synthetic volume");
    d.field("volume_classes", data.volume_classes, "3D: organ labels per synthetic volume");
    d.field("volume_seed", data.volume_seed, "3D: seed of the synthetic volumes");
    d.field("patch_size", data.patch_size, "3D: [D, H, W] voxels of reference and query patches");
    d.field("patch_augment", data.patch_augment,
            "flips, intensity and noise per training patch (datasets: rotation and scaling too)");
  });
  v.section("optim", [&](ConfigVisitor& o) {
    o.choice("name", optim.name, {"adamw", "lamb"}, "optimiser");
    o.field("lr", optim.lr, "peak learning rate");
    o.field("weight_decay", optim.weight_decay, "decoupled weight decay");
    o.field("eps", optim.eps, "added to the root of the second moment");
    o.field("max_trust_ratio", optim.max_trust_ratio, "lamb: trust ratio cap (0: none)");
    o.field("max_weight_norm", optim.max_weight_norm,
            "lamb: clamp of the weight norm in the trust ratio (0: none)");
    o.field("warmup", optim.warmup, "linear warmup steps");
    o.choice("schedule", optim.schedule, {"cosine", "exponential", "constant"},
             "decay after warmup");
    o.field("final_lr_ratio", optim.final_lr_ratio, "learning rate at the end / peak");
    o.field("grad_clip", optim.grad_clip, "max gradient norm (0: off)");
    o.field("iterations", optim.iterations, "optimiser steps");
    o.field("batch", optim.batch, "episodes per step (gradients accumulated)");
  });
  v.section("loss", [&](ConfigVisitor& l) {
    l.field("dice", loss.dice, "weight of the soft Dice loss");
    l.field("bce", loss.bce, "weight of the binary cross-entropy");
  });
  v.section("validation", [&](ConfigVisitor& s) {
    s.field("every", validation.every, "steps between validations (0: only at the end)");
    s.field("episodes", validation.episodes, "fixed validation episodes");
  });
  v.field("log_every", log_every, "steps between metrics.jsonl rows");
  v.field("checkpoint_every", checkpoint_every,
          "steps between checkpoints/last.pt for --resume (0: only at the end)");
}

TrainResult train_iris(const IrisTrainConfig& given, const TrainSession& session) {
  // Dataset names and modalities resolved from the data, so config.yaml records them and a
  // resumed run compares like with like.
  IrisTrainConfig config = given;
  config.data.datasets = resolve_dataset_specs(config.data.datasets);
  const auto& o = config.model.options;
  check_iris_train_config(config);
  if (config.optim.iterations < 1 || config.optim.batch < 1) {
    throw ConfigError("optim.iterations and optim.batch must be at least 1");
  }
  const bool resuming = !session.resume.empty();
  dist::DistContext* group = session.dist;
  const int rank = group ? group->rank() : 0, world_size = group ? group->world_size() : 1;
  // Only rank 0 writes into the run folder; all ranks read a resumed run's checkpoint.
  const bool writer = rank == 0;
  IrisTrainConfig resolved = config;
  std::optional<RunDir> run_folder;
  if (resuming) {
    if (!fs::is_regular_file(fs::path(session.resume) / "config.yaml")) {
      throw InputError(file_message(session.resume, "not a run folder to resume (no config.yaml)"));
    }
    run_folder = RunDir::existing(session.resume);
    // The run's own config decides; only where it runs may change.
    resolved = config_for_resume(*run_folder, config);
  } else if (writer) {
    resolved.run.name = config.run.name.empty() ? generated_run_name("iris") : config.run.name;
    run_folder = RunDir::open(config.run.root, resolved.run.name, RunDir::Mode::kCreate);
    run_folder->write_config(dump_config(resolved));
  }
  const RunDir* run = writer ? &*run_folder : nullptr;
  if (run) log_to_file(run->log_path());
  c10::Device device = resolve_device(config.run.device);
  if (group && device.is_cuda()) device = c10::Device(c10::kCUDA, group->local_rank());
  set_threads(config.run.threads);
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  const Precision precision = parse_precision(config.run.precision);
  // fp16 gradients underflow without loss scaling; bf16 has float32's range.
  std::optional<LossScaler> scaler;
  if (precision == Precision::kFloat16) {
    LossScalerOptions scaler_options;
    scaler_options.init_scale = config.run.loss_scale;
    scaler.emplace(scaler_options);
  }
  if (group && config.optim.batch < world_size) {
    throw ConfigError(
        fmt::format("optim.batch {} is the global batch: at least one episode per "
                    "rank ({} ranks)",
                    config.optim.batch, world_size));
  }
  // This rank's episodes of every step: global indices [begin, end).
  const dist::BatchShard shard = dist::shard_batch(config.optim.batch, rank, world_size);

  // Data: 2D atlas slices or 3D patches of synthetic volumes, with fixed validation episodes.
  const EpisodeData data = config.data.source == "datasets"   ? dataset_episodes(config)
                           : config.data.source == "subjects" ? subject_episodes(config)
                           : o.spatial_dims == 3              ? synthetic_volume_episodes(config)
                                                              : atlas_episodes(config);
  spdlog::info("IRIS training: {}; run folder {}", data.summary,
               run ? run->path().string() : "(rank 0's)");

  models::IrisModel model(o);
  model->to(device);
  const auto optimizer_holder = make_optimizer(config.optim, model->parameters());
  torch::optim::Optimizer& optimizer = *optimizer_holder;
  models::MemoryBank bank;
  TrainState state;
  if (resuming) {
    state = load_checkpoint(run_folder->checkpoints_dir() / "last.pt", model, optimizer, bank,
                            scaler ? &*scaler : nullptr);
    model->to(device);
  }
  if (config.run.channels_last) to_channels_last(*model);
  if (precision != Precision::kFloat32 || config.run.channels_last) {
    spdlog::info("precision {} (autocast on {}){}", to_string(precision), device.str(),
                 config.run.channels_last ? ", channels-last layout" : "");
  }
  // Same initial weights everywhere (the seed already gives them; a broadcast makes it a fact).
  if (group) group->broadcast(model->parameters());
  dist::GradientSync gradients(model->parameters(), group);
  TrainResult result;
  if (run) result.run_dir = run->path().string();
  result.resumed_from = state.step;
  if (resuming && state.step >= config.optim.iterations) {
    spdlog::info("run {} already finished all {} steps; nothing to resume", session.resume,
                 config.optim.iterations);
    result.steps = state.step;
    result.finished = result.already_finished = true;
    result.best_validation_dice = state.best_dice;
    result.best_step = state.best_step;
    result.final_train_loss = state.final_train_loss;
    result.seconds = state.seconds;
    stop_log_file();
    return result;
  }
  if (resuming) {
    if (run) truncate_metrics(*run, state.step);
    spdlog::info("resuming {} at step {} of {}", session.resume, state.step + 1,
                 config.optim.iterations);
  }
  const LrSchedule schedule{config.optim.lr, config.optim.warmup, config.optim.iterations,
                            config.optim.schedule, config.optim.final_lr_ratio};
  // Returns the task embeddings too ([1, K, m + 1, C]) for the memory bank.
  auto episode_loss = [&](const Batch& b) {
    const at::Tensor task = model->encode_task(b.ref_image, b.ref_masks);
    const auto out = model->segment(b.query_image, task);
    // Losses in float32 whatever the autocast precision: their sums run over every voxel.
    const at::Tensor logits = out.logits.to(at::kFloat);
    at::Tensor loss = config.loss.dice * soft_dice_loss(logits, b.query_masks) +
                      config.loss.bce * bce_loss(logits, b.query_masks);
    for (const auto& aux_logits : out.auxiliary) {
      const at::Tensor aux = aux_logits.to(at::kFloat);
      const auto target = pool_masks(b.query_masks, aux) > 0.5;
      loss = loss + 0.5 * (soft_dice_loss(aux, target) + bce_loss(aux, target));
    }
    return std::make_tuple(loss, logits, task);
  };

  auto validate = [&](int64_t step) {
    torch::NoGradGuard no_grad;
    model->eval();
    double loss_sum = 0;
    std::map<int64_t, std::pair<double, int64_t>> per_class;
    for (const auto& e : data.validation) {
      const Batch b = to_device(e.batch, device, config.run.channels_last);
      auto [loss, logits, task] = episode_loss(b);
      loss_sum += loss.item<double>();
      const auto dice = hard_dice(logits, b.query_masks)[0];
      for (std::size_t k = 0; k < e.class_values.size(); ++k) {
        auto& acc = per_class[e.class_values[k]];
        acc.first += dice[static_cast<int64_t>(k)].item<double>();
        ++acc.second;
      }
    }
    model->train();
    nlohmann::json row{{"step", step}, {"val/loss", loss_sum / data.validation.size()}};
    double dice_sum = 0;
    int64_t n = 0;
    nlohmann::json classes_json = nlohmann::json::object();
    std::map<std::string, std::pair<double, int64_t>> per_dataset;
    for (const auto& [value, acc] : per_class) {
      classes_json[data.class_name(value)] = acc.first / acc.second;
      dice_sum += acc.first;
      n += acc.second;
      auto& dataset = per_dataset[data.dataset_of(value)];
      dataset.first += acc.first;
      dataset.second += acc.second;
    }
    row["val/dice"] = n > 0 ? dice_sum / n : 0.0;
    row["val/dice_per_class"] = classes_json;
    if (config.data.source == "datasets") {
      nlohmann::json datasets_json = nlohmann::json::object();
      for (const auto& [name, acc] : per_dataset) datasets_json[name] = acc.first / acc.second;
      row["val/dice_per_dataset"] = datasets_json;
    }
    return row;
  };

  // TensorBoard scalars beside metrics.jsonl, for TensorBoard and W&B's TensorBoard sync.
  std::optional<track::TensorBoardWriter> tensorboard;
  if (run) tensorboard.emplace(run->path() / "tb");

  const auto start = Clock::now();
  const double previous_seconds = state.seconds;
  Progress progress("train iris", config.optim.iterations, "step");
  if (state.step > 0) progress.advance(state.step, "resumed");
  double best = state.best_dice;
  result.best_validation_dice = std::max(0.0, state.best_dice);
  result.best_step = state.best_step;
  result.final_train_loss = state.final_train_loss;
  const int64_t last_step = session.stop_after > 0
                                ? std::min(session.stop_after, config.optim.iterations)
                                : config.optim.iterations;
  double run_peak_gpu_mb = 0;
  for (int64_t step = state.step + 1; step <= last_step; ++step) {
    reset_cuda_peak(device);
    const double lr = schedule.lr(step);
    for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
    gradients.zero();
    double data_ms = 0, compute_ms = 0, loss_sum = 0, dice_sum = 0;
    int64_t dice_n = 0;
    // Summed on the device and read back once per step, after the episodes.
    const auto sum_options = at::TensorOptions().dtype(at::kDouble).device(device);
    at::Tensor loss_total = at::zeros({}, sum_options), dice_total = at::zeros({}, sum_options);
    // Task embeddings of all of the step's episodes, for the memory bank: [batch, K, m + 1, C]
    // and the episodes' class values [batch, K] (-1: none), filled by the rank that ran each.
    at::Tensor step_embeddings, step_classes;
    for (int64_t i = shard.begin; i < shard.end; ++i) {
      auto t0 = Clock::now();
      // An episode depends on (seed, step, index) only: any split across ranks, and a resumed
      // run, sample the same ones.
      std::mt19937_64 episode_rng(
          dist::sample_seed(static_cast<uint64_t>(config.run.seed), step, i));
      const EpisodeBatch episode = data.sample(episode_rng);
      const Batch b = to_device(episode.batch, device, config.run.channels_last);
      data_ms += ms_since(t0);
      t0 = Clock::now();
      auto [loss, logits, task] = [&] {
        AutocastScope autocast(device, precision);
        return episode_loss(b);
      }();
      const at::Tensor micro_loss = loss / static_cast<double>(config.optim.batch);
      // The rank's last episode of the step overlaps its backward with the all-reduce.
      gradients.backward(scaler ? scaler->scale(micro_loss) : micro_loss, i + 1 == shard.end);
      loss_total += loss.detach().to(at::kDouble);
      const auto dice = hard_dice(logits.detach(), b.query_masks);
      dice_total += dice.sum().to(at::kDouble);
      dice_n += dice.numel();
      const at::Tensor embeddings = task.detach()[0].to(at::kDouble);
      if (!step_embeddings.defined()) {
        // Episodes may hold fewer classes than classes_per_episode (a sparse reference slice).
        auto shape = embeddings.sizes().vec();
        shape[0] = config.data.classes_per_episode;
        shape.insert(shape.begin(), config.optim.batch);
        step_embeddings = at::zeros(shape, embeddings.options());
        step_classes =
            at::zeros({config.optim.batch, config.data.classes_per_episode}, at::kDouble);
      }
      step_embeddings[i].narrow(0, 0, embeddings.size(0)).copy_(embeddings);
      for (std::size_t k = 0; k < episode.class_values.size(); ++k) {
        step_classes[i][static_cast<int64_t>(k)] = static_cast<double>(episode.class_values[k] + 1);
      }
      compute_ms += ms_since(t0);
    }
    auto t0 = Clock::now();
    // The step's readback: logged loss and Dice, the memory bank's embeddings.
    step_embeddings = step_embeddings.cpu();
    {
      const at::Tensor sums = at::stack({loss_total, dice_total}).cpu();
      loss_sum = sums[0].item<double>();
      dice_sum = sums[1].item<double>();
    }
    // The gradient reduction left after backward (what overlapping did not hide).
    const auto sync_start = Clock::now();
    gradients.finish();
    double sync_ms = ms_since(sync_start);
    if (group) {
      group->all_reduce_sum({step_embeddings, step_classes});
      const auto sums = group->all_reduce_sum({loss_sum, dice_sum, static_cast<double>(dice_n),
                                               data_ms, compute_ms + ms_since(t0), sync_ms});
      loss_sum = sums[0];
      dice_sum = sums[1];
      dice_n = static_cast<int64_t>(sums[2]);
      // Time per rank, averaged: the ranks run side by side.
      data_ms = sums[3] / world_size;
      compute_ms = sums[4] / world_size;
      sync_ms = sums[5] / world_size;
      t0 = Clock::now();
    }
    // All ranks hold the same summed gradients, so they take the same decision.
    const bool finite = scaler ? scaler->unscale_and_check(model->parameters()) : true;
    // The bank sees the episodes in global order, as one process would; a skipped step leaves
    // the bank as it leaves the weights.
    for (int64_t i = 0; i < (finite ? config.optim.batch : 0); ++i) {
      for (int64_t k = 0; k < step_classes.size(1); ++k) {
        const auto value = static_cast<int64_t>(step_classes[i][k].item<double>()) - 1;
        if (value < 0) continue;
        const auto [dataset, name] = data.bank_key(value);
        bank.update(dataset, name, step_embeddings[i][k].to(at::kFloat));
      }
    }
    if (finite) {
      if (config.optim.grad_clip > 0) clip_grad_norm(model->parameters(), config.optim.grad_clip);
      optimizer.step();
    } else {
      spdlog::warn("step {}: non-finite fp16 gradients at loss scale {}; step skipped", step,
                   scaler->scale_value());
    }
    const double loss_scale = scaler ? scaler->scale_value() : 1.0;
    if (scaler) scaler->update(finite);
    compute_ms += ms_since(t0);
    const double step_peak_gpu_mb = cuda_peak_allocated_mb(device);
    run_peak_gpu_mb = std::max(run_peak_gpu_mb, step_peak_gpu_mb);
    result.final_train_loss = loss_sum / config.optim.batch;
    if (step % config.log_every == 0 || step == config.optim.iterations) {
      const double train_dice = dice_n > 0 ? dice_sum / dice_n : 0.0;
      if (run) {
        tensorboard->add_scalars(
            {{"train/loss", result.final_train_loss}, {"train/dice", train_dice}, {"lr", lr}},
            step);
        nlohmann::json row{
            {"step", step},
            {"train/loss", result.final_train_loss},
            {"train/dice", train_dice},
            {"lr", lr},
            {"time/data_ms", data_ms},
            {"time/compute_ms", compute_ms},
            {"time/sync_ms", sync_ms},
            {"samples_per_s", 1000.0 * config.optim.batch / std::max(1e-9, data_ms + compute_ms)},
            {"memory/peak_rss_mb", peak_rss_mb()}};
        if (device.is_cuda()) row["memory/peak_gpu_mb"] = step_peak_gpu_mb;
        if (scaler) {
          row["skipped_step"] = !finite;
          row["loss_scale"] = loss_scale;
        }
        run->append_metrics(row);
      }
    }
    // Validation, best weights and checkpoints are rank 0's; the others go on to the next step's
    // all-reduce and wait for it there.
    const bool validate_now =
        run && ((config.validation.every > 0 && step % config.validation.every == 0) ||
                step == config.optim.iterations);
    if (validate_now) {
      const auto row = validate(step);
      run->append_metrics(row);
      const double dice = row["val/dice"].get<double>();
      std::vector<std::pair<std::string, double>> scalars{{"val/loss", row["val/loss"].get<double>()},
                                                          {"val/dice", dice}};
      for (const char* group : {"val/dice_per_class", "val/dice_per_dataset"}) {
        if (!row.contains(group)) continue;
        for (const auto& [name, value] : row[group].items()) {
          scalars.emplace_back(std::string(group) + "/" + name, value.get<double>());
        }
      }
      tensorboard->add_scalars(scalars, step);
      if (dice > best) {
        best = dice;
        result.best_validation_dice = dice;
        result.best_step = step;
      }
      spdlog::info("step {}: validation loss {:.4f}, Dice {:.4f} (best {:.4f} at step {})", step,
                   row["val/loss"].get<double>(), dice, best, result.best_step);
    }
    state = {step, best, result.best_step, result.final_train_loss,
             previous_seconds + std::chrono::duration<double>(Clock::now() - start).count()};
    if (run && result.best_step == step) {
      save_checkpoint(model, optimizer, bank, state, scaler ? &*scaler : nullptr,
                      run->checkpoints_dir() / "best.pt");
    }
    if (run && ((config.checkpoint_every > 0 && step % config.checkpoint_every == 0) ||
                step == last_step)) {
      save_checkpoint(model, optimizer, bank, state, scaler ? &*scaler : nullptr,
                      run->checkpoints_dir() / "last.pt");
    }
    progress.advance(1, fmt::format("loss {:.4f}", result.final_train_loss));
  }
  progress.finish();
  result.steps = last_step;
  result.seconds = state.seconds;
  if (last_step < config.optim.iterations) {
    spdlog::info("stopped after step {} of {}; continue with --resume {}", last_step,
                 config.optim.iterations, result.run_dir);
    stop_log_file();
    return result;
  }
  result.finished = true;
  if (!run) return result;
  nlohmann::json summary{{"model", "iris"},
                         {"steps", result.steps},
                         {"best/val_dice", result.best_validation_dice},
                         {"best/step", result.best_step},
                         {"final/train_loss", result.final_train_loss},
                         {"time/seconds", result.seconds},
                         {"memory/peak_rss_mb", peak_rss_mb()},
                         {"memory_bank/classes", bank.size()},
                         {"parameters", [&] {
                            int64_t n = 0;
                            for (const auto& p : model->parameters()) n += p.numel();
                            return n;
                          }()}};
  summary["precision"] = to_string(precision);
  if (device.is_cuda()) summary["memory/peak_gpu_mb"] = run_peak_gpu_mb;
  run->write_summary(summary);
  stop_log_file();
  return result;
}

}  // namespace iris
