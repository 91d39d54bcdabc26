#include "eval/iris_predict.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "data/episodes.h"
#include "eval/metrics.h"
#include "data/image_folder_dataset.h"
#include "data/nifti_dataset.h"
#include "io/image_io.h"
#include "io/nifti.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using models::Strategy;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Slices segmented per forward pass in slice mode.
constexpr int64_t kSliceBatch = 8;

enum class Kind { kImage, kNifti };

Kind kind_of(const fs::path& path) {
  if (!nifti_extension(path.string()).empty()) return Kind::kNifti;
  if (is_image_file(path)) return Kind::kImage;
  throw InputError(
      file_message(path.string(), "expected a PNG/JPEG image or a NIfTI volume (.nii, .nii.gz)"));
}

// An image as the model sees it with its label map, and the geometry to write masks back.
struct Loaded {
  Kind kind = Kind::kImage;
  fs::path path;
  at::Tensor image;         // [C, H, W] or [nk, nj, ni] float
  at::Tensor labels;        // [H, W] or [nk, nj, ni] int64 on the image's grid; undefined without
  at::Tensor file_labels;   // the label map on the file's own grid (evaluation)
  Affine affine;            // NIfTI geometry of the file, written back with the masks
  int sform_code = 1, qform_code = 1;
  std::optional<Geometry> geometry;  // prepared volumes: the way back onto the file's grid
  double background = 0;             // padding of prepared 2D images: their lowest value
};

at::Tensor grey(const at::Tensor& raw) {
  if (raw.dim() == 2) return raw.to(at::kFloat);
  return raw.narrow(2, 0, std::min<int64_t>(raw.size(2), 3)).to(at::kFloat).mean(2);
}

Loaded load(const fs::path& path, const IrisPredictOptions& o, const fs::path& label_path = {}) {
  Loaded l;
  l.kind = kind_of(path);
  l.path = path;
  if (l.kind == Kind::kNifti) {
    const Volume v = read_nifti(path);
    if (v.data.dim() != 3) {
      throw InputError(file_message(
          path.string(), fmt::format("expected a 3D volume, got {} dims", v.data.dim())));
    }
    l.affine = v.affine;
    l.sform_code = v.sform_code;
    l.qform_code = v.qform_code;
    std::optional<Volume> labels;
    if (!label_path.empty()) {
      if (kind_of(label_path) != Kind::kNifti) {
        throw InputError(
            file_message(label_path.string(), "the mask of a NIfTI image must be NIfTI too"));
      }
      labels = read_nifti(label_path);
      labels->data = labels->data.to(at::kLong);
      if (labels->data.sizes() != v.data.sizes()) {
        throw InputError(file_message(
            label_path.string(),
            fmt::format("mask of size {} does not match its image {} of size {}",
                        c10::str(labels->data.sizes()), path.string(), c10::str(v.data.sizes()))));
      }
      l.file_labels = labels->data;
    }
    if (o.prepare) {
      PreparedVolume p = prepare_volume(v, labels ? &*labels : nullptr, o.modality, o.preprocess);
      l.image = p.image[0];
      l.labels = p.labels;
      l.geometry = p.geometry;
    } else {
      l.image = normalize_mri(v.data);
      l.labels = l.file_labels;
    }
    return l;
  }
  const at::Tensor raw = read_image_raw(path);
  if (o.prepare) {
    l.image = normalize_intensity(with_channels(image_channels(raw), o.in_channels, path.string()),
                                  o.modality, o.preprocess);
    l.background = l.image.min().item<double>();
  } else {
    l.image = normalize_mri(grey(raw)).unsqueeze(0);
  }
  if (!label_path.empty()) {
    l.labels = l.file_labels = read_mask_labels(label_path);
    if (l.labels.sizes() != l.image.sizes().slice(1)) {
      throw InputError(file_message(
          label_path.string(),
          fmt::format("mask of size {} does not match its image {} of size {}",
                      c10::str(l.labels.sizes()), path.string(),
                      c10::str(l.image.sizes().slice(1)))));
    }
  }
  return l;
}

at::Tensor class_masks(const at::Tensor& labels, const std::vector<int64_t>& classes) {
  std::vector<at::Tensor> masks;
  for (int64_t v : classes) masks.push_back((labels == v).to(at::kFloat));
  return at::stack(masks);  // [K, *S]
}

std::string mode_name(int64_t spatial_dims, Kind kind) {
  if (spatial_dims == 3) {
    if (kind != Kind::kNifti) throw InputError("a 3D model segments NIfTI volumes, not 2D images");
    return "3d-volume";
  }
  return kind == Kind::kNifti ? "2d-slices" : "2d-image";
}

models::Reference make_reference(const Loaded& r, const std::vector<int64_t>& classes,
                                 const std::string& mode, int64_t slice_size) {
  const at::Tensor masks = class_masks(r.labels, classes);
  if (mode == "2d-image") {
    const SquareFrame f = square_frame(r.image.size(1), r.image.size(2));
    return {to_square(r.image, f, slice_size, false, r.background),
            to_square(masks, f, slice_size, true),
            {r.path.string(), -1}};
  }
  if (mode == "2d-slices") {
    // The axial slice with the most voxels of the classes.
    const int64_t k = masks.sum({0, 2, 3}).argmax().item<int64_t>();
    const SquareFrame f = square_frame(r.image.size(1), r.image.size(2));
    return {to_square(r.image.narrow(0, k, 1), f, slice_size, false),
            to_square(masks.select(1, k), f, slice_size, true),
            {r.path.string(), k}};
  }
  return {r.image.unsqueeze(0), masks, {r.path.string(), -1}};
}

struct Logits {
  at::Tensor logits;  // [K, *S] on the query's grid
  double task_ms = 0, segment_ms = 0;
};

Logits predict_logits(models::IrisModel& model, const std::vector<models::Reference>& refs,
                      const Loaded& query, const std::string& mode,
                      const models::InferenceOptions& inference, int64_t slice_size) {
  Logits out;
  const models::ImageId query_id{query.path.string(), -1};
  if (mode == "3d-volume") {
    const auto r =
        models::infer(model, query.image.unsqueeze(0).unsqueeze(0), query_id, refs, inference);
    return {r.logits[0].cpu(), r.task_ms, r.segment_ms};
  }
  if (mode == "2d-image") {
    const SquareFrame f = square_frame(query.image.size(1), query.image.size(2));
    const auto r =
        models::infer(model, to_square(query.image, f, slice_size, false, query.background).unsqueeze(0),
                      query_id, refs, inference);
    return {from_square(r.logits.cpu(), f)[0], r.task_ms, r.segment_ms};
  }
  // Slice mode: a query-independent task is computed once; retrieval looks up per slice.
  const SquareFrame f = square_frame(query.image.size(1), query.image.size(2));
  const at::Tensor slices =
      to_square(query.image, f, slice_size, false).unsqueeze(1);  // [nk, 1, S, S]
  std::vector<at::Tensor> parts;
  at::Tensor task;
  for (int64_t k = 0; k < slices.size(0); k += kSliceBatch) {
    const int64_t n = std::min(kSliceBatch, slices.size(0) - k);
    const at::Tensor batch = slices.narrow(0, k, n);
    if (inference.strategy == Strategy::kRetrieval) {
      for (int64_t i = 0; i < n; ++i) {
        const auto r = models::infer(model, batch.narrow(0, i, 1), query_id, refs, inference);
        out.task_ms += r.task_ms;
        out.segment_ms += r.segment_ms;
        parts.push_back(r.logits.cpu());
      }
      continue;
    }
    if (!task.defined()) {
      const auto r = models::infer(model, batch.narrow(0, 0, 1), query_id, refs, inference);
      task = r.task;
      out.task_ms = r.task_ms;
    }
    const auto start = Clock::now();
    parts.push_back(models::segment_logits(model, batch, task).cpu());
    out.segment_ms += ms_since(start);
  }
  out.logits = from_square(at::cat(parts), f).transpose(0, 1).contiguous();  // [K, nk, nj, ni]
  return out;
}

// Highest logit per voxel where it is positive -> class value, else 0.
at::Tensor label_map(const at::Tensor& logits, const std::vector<int64_t>& classes) {
  const auto [best, index] = logits.max(0);
  const at::Tensor values =
      at::tensor(classes, at::kLong).index_select(0, index.flatten()).view(index.sizes());
  return at::where(best > 0, values, at::zeros_like(values));
}

std::vector<int64_t> nonzero_values(const at::Tensor& labels) {
  const at::Tensor values = std::get<0>(at::_unique(labels.flatten())).contiguous();
  std::vector<int64_t> out;
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (const int64_t v = values[i].item<int64_t>(); v != 0) out.push_back(v);
  }
  return out;
}

models::InferenceOptions inference_options(const IrisPredictOptions& o,
                                           const std::vector<int64_t>& classes,
                                           const std::string& mode) {
  models::InferenceOptions inference;
  inference.strategy = o.strategy;
  inference.tuning = o.tuning;
  inference.retrieval = o.retrieval;
  if (mode == "3d-volume") inference.window = o.window;
  inference.bank = o.bank;
  inference.bank_dataset = o.bank_dataset;
  inference.class_names = o.class_names;
  if (inference.class_names.empty()) {
    for (int64_t v : classes) inference.class_names.push_back(std::to_string(v));
  }
  if (inference.class_names.size() != classes.size()) {
    throw InputError(
        fmt::format("{} class names for {} classes", inference.class_names.size(), classes.size()));
  }
  return inference;
}

struct Prepared {
  std::string mode;
  std::vector<models::Reference> refs;
};

Prepared prepare(models::IrisModel& model, const std::vector<Loaded>& refs, const Loaded& query,
                 const std::vector<int64_t>& classes, int64_t slice_size) {
  Prepared p;
  p.mode = mode_name(model->options.spatial_dims, query.kind);
  for (const auto& r : refs) {
    if (r.kind != query.kind) {
      throw InputError(file_message(
          r.path.string(), "references and query must all be images or all NIfTI volumes"));
    }
    p.refs.push_back(make_reference(r, classes, p.mode, slice_size));
  }
  return p;
}

}  // namespace

IrisPrediction predict_iris(models::IrisModel& model, const std::vector<ReferenceFiles>& references,
                            const fs::path& query_path, const IrisPredictOptions& o,
                            const fs::path& out) {
  const auto start = Clock::now();
  const bool needs_references =
      !(o.strategy == Strategy::kRetrieval && o.bank != nullptr && !o.class_names.empty());
  if (references.empty() && needs_references) {
    throw InputError(
        fmt::format("strategy {} needs at least one --reference with its --reference-mask",
                    models::strategy_name(o.strategy)));
  }
  std::vector<Loaded> refs;
  for (const auto& r : references) refs.push_back(load(r.image, o, r.mask));
  const Loaded query = load(query_path, o);
  std::vector<int64_t> classes = o.classes;
  if (classes.empty()) {
    if (refs.empty()) throw InputError("give --classes when there are no references");
    classes = nonzero_values(refs.front().labels);
    if (classes.empty())
      throw InputError(file_message(references.front().mask.string(), "the mask is empty"));
  }
  for (int64_t v : classes) {
    bool present = refs.empty();
    for (const auto& r : refs) present |= (r.labels == v).any().item<bool>();
    if (!present) throw InputError(fmt::format("class {} appears in no reference mask", v));
  }
  IrisPrediction result;
  result.classes = classes;
  const Prepared p = prepare(model, refs, query, classes, o.slice_size);
  result.mode = p.mode;
  result.load_ms = ms_since(start);
  const auto inference = inference_options(o, classes, p.mode);
  const Logits logits = predict_logits(model, p.refs, query, p.mode, inference, o.slice_size);
  result.task_ms = logits.task_ms;
  result.segment_ms = logits.segment_ms;
  const at::Tensor prepared_labels = label_map(logits.logits, classes);
  result.labels = query.geometry ? restore_labels(prepared_labels, *query.geometry).data
                                 : prepared_labels;
  for (int64_t v : classes) result.voxels.push_back((result.labels == v).sum().item<int64_t>());

  if (!out.empty()) {
    fs::create_directories(out);
    const int64_t max_value = *std::max_element(classes.begin(), classes.end());
    if (query.kind == Kind::kNifti) {
      Volume mask;
      mask.data = result.labels.to(max_value < 32768 ? at::kShort : at::kInt);
      mask.affine = query.affine;
      mask.sform_code = query.sform_code;
      mask.qform_code = query.qform_code;
      result.written.push_back(out / "mask.nii.gz");
      write_nifti(result.written.back(), mask);
      if (o.write_prepared && query.geometry) {
        Volume prepared;
        prepared.data = prepared_labels.to(mask.data.scalar_type());
        prepared.affine = query.geometry->affine;
        result.written.push_back(out / "mask_prepared.nii.gz");
        write_nifti(result.written.back(), prepared);
      }
    } else {
      result.written.push_back(out / "mask.png");
      write_image(result.written.back(), result.labels.to(max_value < 256 ? at::kByte : at::kInt));
    }
  }
  result.total_ms = ms_since(start);
  if (!out.empty()) {
    nlohmann::json classes_json = nlohmann::json::array();
    for (std::size_t k = 0; k < classes.size(); ++k) {
      classes_json.push_back({{"value", classes[k]},
                              {"name", inference.class_names[k]},
                              {"predicted_voxels", result.voxels[k]}});
    }
    nlohmann::json refs_json = nlohmann::json::array();
    for (std::size_t i = 0; i < references.size(); ++i) {
      refs_json.push_back({{"image", references[i].image.string()},
                           {"mask", references[i].mask.string()},
                           {"slice", p.refs[i].id.index}});
    }
    const nlohmann::json json = {{"query", query_path.string()},
                                 {"mode", result.mode},
                                 {"strategy", models::strategy_name(o.strategy)},
                                 {"references", refs_json},
                                 {"classes", classes_json},
                                 {"label_map", result.written.front().filename().string()},
                                 {"retrieval_source", o.strategy != Strategy::kRetrieval ? ""
                                                      : o.bank ? "memory bank"
                                                               : "references"},
                                 {"timings_ms",
                                  {{"load", result.load_ms},
                                   {"task", result.task_ms},
                                   {"segment", result.segment_ms},
                                   {"total", result.total_ms}}}};
    result.written.push_back(out / "prediction.json");
    write_file_atomic(result.written.back(), json.dump(2) + "\n");
  }
  return result;
}

IrisEvalResult evaluate_iris(models::IrisModel& model, const fs::path& pool,
                             const IrisEvalOptions& o) {
  // The pool's (image, label) pairs.
  std::vector<std::pair<fs::path, fs::path>> files;
  std::map<int64_t, std::string> names;
  if (is_nifti_dataset_dir(pool)) {
    const NiftiDataset dataset = scan_nifti_dataset(pool);
    for (const auto& c : dataset.cases) {
      if (c.ok && !c.label.empty()) files.emplace_back(c.image, c.label);
    }
    names = dataset.label_names;
  } else if (is_image_folder_dataset_dir(pool)) {
    for (const auto& c : scan_image_folder(pool).cases) {
      if (c.ok) files.emplace_back(c.image, c.mask);
    }
  } else if (fs::is_directory(pool)) {
    const fs::path masks = fs::is_directory(pool / "masks") ? pool / "masks" : pool / "labels";
    for (const auto& image : list_frames(pool)) {
      if (fs::exists(masks / image.filename())) files.emplace_back(image, masks / image.filename());
    }
  } else {
    throw InputError(
        file_message(pool.string(), "expected an imagesTr/labelsTr tree or a folder of images"));
  }
  if (files.size() < 2) {
    throw InputError(file_message(pool.string(),
                                  "a pool needs at least two labelled cases (query + reference)"));
  }
  std::vector<Loaded> cases;
  std::set<int64_t> values;
  for (const auto& [image, label] : files) {
    cases.push_back(load(image, o.predict, label));
    for (int64_t v : nonzero_values(cases.back().labels)) values.insert(v);
  }
  IrisEvalResult result;
  result.classes = o.predict.classes.empty() ? std::vector<int64_t>(values.begin(), values.end())
                                             : o.predict.classes;
  for (int64_t v : result.classes) {
    const auto it = names.find(v);
    result.class_names.push_back(it != names.end() ? it->second : std::to_string(v));
  }
  const auto n = static_cast<int64_t>(cases.size());
  const int64_t k = std::clamp<int64_t>(o.references, 1, n - 1);
  const int64_t queries = o.max_queries > 0 ? std::min(o.max_queries, n) : n;
  const std::size_t classes = result.classes.size();
  result.dataset = pool.filename().empty() ? pool.parent_path().filename().string()
                                           : pool.filename().string();
  for (auto s : o.strategies) result.strategies.push_back(models::strategy_name(s));
  const std::size_t trained_rows = o.strategies.size();
  if (o.copy_baseline) result.strategies.push_back("copied reference");
  if (o.untrained) result.strategies.push_back("untrained one-shot");
  const std::size_t rows = result.strategies.size();
  result.dice.assign(rows, std::vector<double>(classes, 0.0));
  result.hd95.assign(rows, std::vector<double>(classes, 0.0));
  result.nsd.assign(rows, std::vector<double>(classes, 0.0));
  result.counts.assign(rows, std::vector<int64_t>(classes, 0));
  result.hd95_counts.assign(rows, std::vector<int64_t>(classes, 0));
  result.seconds.assign(rows, 0.0);
  std::vector<int64_t> timed(rows, 0);

  // Scores one label map on the query's file grid against its truth.
  auto score = [&](std::size_t row, const at::Tensor& labels, const at::Tensor& truth,
                   const std::vector<double>& spacing) {
    for (std::size_t c = 0; c < classes; ++c) {
      const at::Tensor g = (truth == result.classes[c]).unsqueeze(0).unsqueeze(0);
      if (!g.any().item<bool>()) continue;  // absent from the query: unscored (MONAI's ignore_empty)
      const at::Tensor pred = (labels == result.classes[c]).unsqueeze(0).unsqueeze(0);
      result.dice[row][c] += eval::dice(pred, g).item<double>();
      result.nsd[row][c] += eval::surface_dice(pred, g, o.nsd_tolerance, spacing).item<double>();
      ++result.counts[row][c];
      const double hd = eval::hausdorff_distance(pred, g, 95.0, spacing).item<double>();
      if (!std::isnan(hd)) {
        result.hd95[row][c] += hd;
        ++result.hd95_counts[row][c];
      }
    }
  };

  Progress progress("evaluate iris", queries, "query");
  for (int64_t q = 0; q < queries; ++q) {
    std::vector<Loaded> refs;
    for (int64_t j = 1; j <= k; ++j) refs.push_back(cases[static_cast<std::size_t>((q + j) % n)]);
    Loaded query = cases[static_cast<std::size_t>(q)];
    const at::Tensor truth = query.file_labels;
    query.labels = query.file_labels = at::Tensor();  // the prediction never has the query's label
    result.queries.push_back(query.path.string());
    // Distances in mm on NIfTI grids ([nk, nj, ni] -> spacing along k, j, i), pixels on images.
    std::vector<double> spacing;
    if (query.kind == Kind::kNifti) {
      const auto s = query.affine.spacing();
      spacing = {s[2], s[1], s[0]};
    }
    const Prepared p = prepare(model, refs, query, result.classes, o.predict.slice_size);
    auto run = [&](std::size_t row, models::IrisModel& net, models::Strategy strategy) {
      IrisPredictOptions po = o.predict;
      po.strategy = strategy;
      const auto start = Clock::now();
      const Logits logits =
          predict_logits(net, p.refs, query, p.mode, inference_options(po, result.classes, p.mode),
                         po.slice_size);
      result.seconds[row] += ms_since(start) / 1000.0;
      ++timed[row];
      const at::Tensor prepared_labels = label_map(logits.logits, result.classes);
      score(row, query.geometry ? restore_labels(prepared_labels, *query.geometry).data
                                : prepared_labels,
            truth, spacing);
    };
    for (std::size_t s = 0; s < trained_rows; ++s) run(s, model, o.strategies[s]);
    std::size_t row = trained_rows;
    if (o.copy_baseline) {
      // The first reference's label map as the prediction, where it lies on the query's grid.
      const Loaded& r = refs.front();
      const bool same_grid = r.file_labels.sizes() == truth.sizes() &&
                             (query.kind != Kind::kNifti || r.affine.m == query.affine.m);
      if (same_grid) score(row, r.file_labels, truth, spacing);
      ++row;
    }
    if (o.untrained) run(row, *o.untrained, models::Strategy::kOneShot);
    progress.advance();
  }
  auto mean = [](double sum, int64_t count) {
    return count > 0 ? sum / static_cast<double>(count) : std::nan("");
  };
  for (std::size_t s = 0; s < rows; ++s) {
    result.seconds[s] = timed[s] > 0 ? result.seconds[s] / static_cast<double>(timed[s]) : 0.0;
    for (std::size_t c = 0; c < classes; ++c) {
      result.dice[s][c] = mean(result.dice[s][c], result.counts[s][c]);
      result.nsd[s][c] = mean(result.nsd[s][c], result.counts[s][c]);
      result.hd95[s][c] = mean(result.hd95[s][c], result.hd95_counts[s][c]);
    }
  }
  return result;
}

namespace {

double mean_over_classes(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values) {
    if (!std::isnan(v)) sum += v, ++n;
  }
  return n > 0 ? sum / static_cast<double>(n) : std::nan("");
}

}  // namespace

nlohmann::json iris_eval_json(const IrisEvalResult& r, const IrisEvalOptions& o) {
  auto number = [](double v) {
    return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v);
  };
  nlohmann::json strategies = nlohmann::json::object();
  for (std::size_t s = 0; s < r.strategies.size(); ++s) {
    nlohmann::json per_class = nlohmann::json::object();
    for (std::size_t c = 0; c < r.classes.size(); ++c) {
      per_class[r.class_names[c]] = {{"value", r.classes[c]},
                                     {"dice", number(r.dice[s][c])},
                                     {"hd95_mm", number(r.hd95[s][c])},
                                     {"nsd", number(r.nsd[s][c])},
                                     {"queries", r.counts[s][c]},
                                     {"hd95_queries", r.hd95_counts[s][c]}};
    }
    strategies[r.strategies[s]] = {{"mean_dice", number(mean_over_classes(r.dice[s]))},
                                   {"mean_hd95_mm", number(mean_over_classes(r.hd95[s]))},
                                   {"mean_nsd", number(mean_over_classes(r.nsd[s]))},
                                   {"seconds_per_query", r.seconds[s]},
                                   {"classes", per_class}};
  }
  return {{"dataset", r.dataset},
          {"metric",
           "per class and query on the query's own grid: Dice of the predicted label map; HD95, "
           "the symmetric 95th-percentile surface distance in mm (pixels for 2D images), where "
           "the prediction is not empty; NSD, the normalised surface Dice at nsd_tolerance; each "
           "the mean over the queries where the class is present, then over classes"},
          {"protocol",
           {{"references_per_query", o.references},
            {"reference_choice", "the next cases of the pool, cyclically; never the query"},
            {"queries", r.queries.size()},
            {"nsd_tolerance", o.nsd_tolerance},
            {"baselines",
             "copied reference: the first reference's label map as the prediction (only where it "
             "shares the query's grid); untrained one-shot: the network before training"},
            {"tuning_steps", o.predict.tuning.steps},
            {"tuning_lr", o.predict.tuning.lr},
            {"retrieval_top_k", o.predict.retrieval.top_k}}},
          {"strategies", strategies},
          {"queries", r.queries}};
}

std::string iris_eval_markdown(const IrisEvalResult& r, const IrisEvalOptions& o) {
  std::string md = fmt::format("# IRIS inference strategies on {}\n\n", r.dataset);
  md += fmt::format(
      "{} queries; each query's references are the next {} cases of the pool (never the query). "
      "Per class, the mean over the queries where the class is present: Dice, HD95 (mm; pixels "
      "for 2D images; where the prediction is not empty) and NSD at {} mm. Baselines: the "
      "copied reference (where it shares the query's grid) and the untrained network.\n\n",
      r.queries.size(), o.references, o.nsd_tolerance);
  auto show = [](double v, const char* format) {
    return std::isnan(v) ? std::string("n/a") : fmt::format(fmt::runtime(format), v);
  };
  struct Metric {
    const char* title;
    const std::vector<std::vector<double>>* values;
    const char* format;
  };
  for (const Metric& m : {Metric{"Dice", &r.dice, "{:.4f}"}, Metric{"HD95 (mm)", &r.hd95, "{:.2f}"},
                          Metric{"NSD", &r.nsd, "{:.4f}"}}) {
    md += fmt::format("## {}\n\n| class |", m.title);
    for (const auto& s : r.strategies) md += fmt::format(" {} |", s);
    md += "\n|:--|";
    for (std::size_t s = 0; s < r.strategies.size(); ++s) md += "--:|";
    md += "\n";
    for (std::size_t c = 0; c < r.classes.size(); ++c) {
      md += fmt::format("| {} |", r.class_names[c]);
      for (std::size_t s = 0; s < r.strategies.size(); ++s)
        md += fmt::format(" {} |", show((*m.values)[s][c], m.format));
      md += "\n";
    }
    md += "| **mean** |";
    for (std::size_t s = 0; s < r.strategies.size(); ++s)
      md += fmt::format(" **{}** |", show(mean_over_classes((*m.values)[s]), m.format));
    md += "\n\n";
  }
  md += "| seconds per query |";
  for (std::size_t s = 0; s < r.strategies.size(); ++s)
    md += fmt::format(" {:.3f} |", r.seconds[s]);
  md += "\n";
  return md;
}

}  // namespace iris
