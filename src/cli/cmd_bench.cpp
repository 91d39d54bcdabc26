#include "cli/cmd_bench.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/device.h"
#include "core/error.h"
#include "core/precision.h"
#include "core/resources.h"
#include "core/stats.h"
#include "data/augment.h"
#include "data/clips.h"
#include "data/episodes.h"
#include "data/loader.h"
#include "data/prompts.h"
#include "data/synthetic_video.h"
#include "data/volume_augment.h"
#include "io/checkpoint.h"
#include "io/model_state.h"
#include "models/iris/iris_model.h"
#include "models/sam2/sam2_config.h"
#include "models/sam2/sam2_model.h"
#include "models/sam2/video_predictor.h"
#include "train/losses.h"
#include "train/sam2_trainer.h"
#if IRIS_HAVE_NIFTI
#include "data/synthetic_volume.h"
#endif

namespace iris::cli {
namespace {

namespace sam2 = models::sam2;

struct BenchRow {
  std::string model, size, device, precision, phase;
  int64_t image_size = 0;
  int threads = 0;
  int64_t repeats = 0;
  double median_ms = 0.0;
  double peak_rss_mb = 0.0;
  double median_cpu_ms = -1.0;  // process CPU time (bench train); < 0: not measured
  std::string detail;           // free text for the table's last column
  nlohmann::json extra = nlohmann::json::object();  // further JSON fields of the row
};

struct Sam2BenchOptions {
  std::vector<std::string> sizes{"tiny"};
  std::string config;
  std::string checkpoint;
  std::vector<int64_t> image_sizes{512};
  int64_t frames = 6;
  int64_t repeats = 5;
  std::string json;
};

// A clip with a bright square moving across a textured background, already normalised.
at::Tensor synthetic_frames(int64_t t, int64_t s) {
  torch::manual_seed(0);
  auto frames = torch::rand({t, 3, s, s}) * 0.2 + 0.3;
  for (int64_t i = 0; i < t; ++i) {
    const int64_t x = s / 8 + i * s / (2 * std::max<int64_t>(t, 1));
    frames[i].slice(1, s / 3, s / 3 + s / 4).slice(2, x, x + s / 4).fill_(0.9);
  }
  return (frames - 0.45) / 0.226;
}

std::vector<BenchRow> bench_sam2(const Sam2BenchOptions& o, const GlobalOptions& g) {
  const auto device = resolve_device(g.device);
  const Precision precision = parse_precision(precision_or_default(g));
  std::vector<BenchRow> rows;
  const std::vector<std::string> sizes =
      o.config.empty() ? o.sizes : std::vector<std::string>{"config"};
  for (const auto& size : sizes) {
    for (const int64_t image_size : o.image_sizes) {
      auto options =
          o.config.empty() ? sam2::official_sam2_options(size) : sam2::load_sam2_config(o.config);
      options.image_size = image_size;
      sam2::Sam2Model model(options);
      if (!o.checkpoint.empty()) {
        const auto file = io::read_checkpoint(o.checkpoint);
        io::load_state_dict(*model, io::select_state_dict(file.root, "", o.checkpoint));
      }
      model->to(device);
      model->eval();
      const auto frames = synthetic_frames(o.frames, image_size).to(device);
      BenchRow base;
      base.model = "sam2.1";
      base.size = size;
      base.device = device.str();
      base.precision = to_string(precision);
      base.image_size = image_size;
      base.threads = at::get_num_threads();
      AutocastScope autocast(device, precision);

      // Image encoder: one frame, one warm-up run, median over the repeats.
      std::vector<double> enc;
      {
        torch::NoGradGuard
            guard;  // not InferenceMode: cached constants must stay usable in training
        const auto img = frames.slice(0, 0, 1);
        model->forward_image(img);
        for (int64_t r = 0; r < o.repeats; ++r) {
          const auto t0 = std::chrono::steady_clock::now();
          auto out = model->forward_image(img);
          if (device.is_cuda()) out.backbone_fpn.back().cpu();
          enc.push_back(
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count());
        }
      }
      BenchRow row = base;
      row.phase = "image_encoder";
      row.repeats = o.repeats;
      row.median_ms = median(enc);
      row.peak_rss_mb = peak_rss_mb();
      rows.push_back(row);

      // Tracking: one object boxed on frame 0, propagated through the clip; the step time is
      // everything but the image encoder (memory attention, heads, memory encoder).
      sam2::Sam2VideoPredictor predictor(model);
      predictor.init_state(frames, image_size, image_size);
      const float q = static_cast<float>(image_size);
      predictor.add_new_points_or_box(0, 1, std::nullopt, std::nullopt,
                                      torch::tensor({q / 8, q / 3, q / 8 + q / 4, q / 3 + q / 4}));
      predictor.propagate_in_video(nullptr);
      auto steps = predictor.last_timing().tracking_ms;
      if (steps.size() > 1) steps.erase(steps.begin());  // frame 0 is the prompted frame
      row = base;
      row.phase = "tracking_step";
      row.repeats = static_cast<int64_t>(steps.size());
      row.median_ms = median(steps);
      row.peak_rss_mb = peak_rss_mb();
      rows.push_back(row);
      spdlog::info("sam2 {} @{}: image encoder {:.1f} ms, tracking step {:.1f} ms", size,
                   image_size, rows[rows.size() - 2].median_ms, row.median_ms);
    }
  }
  return rows;
}

// --- iris bench train --------------------------------------------------------------------------

struct TrainBenchOptions {
  std::string size = "tiny";
  std::string config;
  std::string checkpoint;
  int64_t image_size = 256;  // 0: the config's
  int64_t videos = 1;
  int64_t frames = 8;  // per training video; validation videos have half
  int64_t clip_length = 4;
  int64_t epochs = 3;
  std::string json;
};

// A scratch folder for the synthetic videos and the runs, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("iris-bench-train-{:08x}{:08x}", rd(), rd());
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Per-epoch time (clip loop + validation) of SAM2 fine-tuning: recipe md without and with the
// memory feature cache, and ie+md (the encoder trains, no cache possible). Every run starts from
// the same weights and data.
std::vector<BenchRow> bench_train(const TrainBenchOptions& o, const GlobalOptions& g) {
  if (o.epochs < 2) throw UsageError("--epochs must be >= 2 (the cache is reused from epoch 2)");
  ScratchDir scratch;
  SyntheticVideoOptions synth;
  synth.videos = o.videos;
  synth.frames = o.frames;
  auto options = o.config.empty() ? models::sam2::official_sam2_options(o.size)
                                  : models::sam2::load_sam2_config(o.config);
  if (o.image_size > 0) options.image_size = o.image_size;
  synth.width = synth.height = options.image_size;
  synth.seed = 1;
  write_synthetic_videos(synth, scratch.path() / "train");
  synth.seed = 2;
  synth.frames = std::max<int64_t>(2, o.frames / 2);
  write_synthetic_videos(synth, scratch.path() / "val");
  const io::StateDict weights = [&] {
    io::StateDict sd;
    if (!o.checkpoint.empty()) {
      sd = io::select_state_dict(io::read_checkpoint(o.checkpoint).root, "", o.checkpoint);
    }
    return sd;
  }();

  struct Variant {
    std::string phase, recipe, cache;
  };
  const std::vector<Variant> variants{
      {"md", "md", "off"}, {"md+cache", "md", "memory"}, {"ie+md", "ie+md", "off"}};
  const std::string size = o.config.empty() ? o.size : "config";
  std::vector<BenchRow> rows;
  std::map<std::string, double> ms, cpu;
  for (const auto& v : variants) {
    torch::manual_seed(0);  // the same random initialisation for every variant
    models::sam2::Sam2Model model(options);
    if (!weights.empty()) io::load_state_dict(*model, weights);
    Sam2TrainConfig c;
    c.run.root = (scratch.path() / "runs").string();
    c.run.name = v.phase;
    c.run.device = g.device;
    c.run.threads = g.threads;
    c.run.precision = precision_or_default(g);
    c.recipe = v.recipe;
    c.model.prompt_type = "box";
    c.data.name = "synthetic";
    c.data.train = (scratch.path() / "train").string();
    c.data.val = (scratch.path() / "val").string();
    c.data.clip_length = o.clip_length;
    c.data.clip_stride = o.clip_length;
    c.train.max_epochs = o.epochs;
    c.train.feature_cache = v.cache;
    const auto r = train_sam2(c, &model);
    std::vector<double> epoch_ms, cpu_ms;
    for (size_t e = 0; e < r.epoch_train_seconds.size(); ++e) {
      epoch_ms.push_back(1000.0 * (r.epoch_train_seconds[e] + r.epoch_val_seconds.at(e)));
      cpu_ms.push_back(1000.0 * r.epoch_cpu_seconds.at(e));
    }
    BenchRow row;
    row.model = "sam2.1";
    row.size = size;
    row.device = resolve_device(g.device).str();
    row.precision = c.run.precision;
    row.image_size = options.image_size;
    row.threads = at::get_num_threads();
    row.peak_rss_mb = peak_rss_mb();
    if (v.cache != "off") {
      BenchRow first = row;  // the epoch that fills the cache
      first.phase = "epoch:" + v.phase + "@1";
      first.repeats = 1;
      first.median_ms = epoch_ms.front();
      first.median_cpu_ms = cpu_ms.front();
      rows.push_back(first);
      epoch_ms.erase(epoch_ms.begin());
      cpu_ms.erase(cpu_ms.begin());
      row.phase = "epoch:" + v.phase + "@2+";
    } else {
      row.phase = "epoch:" + v.phase;
    }
    row.repeats = static_cast<int64_t>(epoch_ms.size());
    row.median_ms = median(epoch_ms);
    row.median_cpu_ms = median(cpu_ms);
    ms[v.phase] = row.median_ms;
    cpu[v.phase] = row.median_cpu_ms;
    rows.push_back(row);
    spdlog::info("bench train {}: {:.0f} ms per epoch (feature cache {}, {} hits)", v.phase,
                 row.median_ms, r.feature_cache, r.cache_hits);
  }
  spdlog::info(
      "recipe md per epoch: {:.2f}x faster with the feature cache (epoch 2+); ie+md takes "
      "{:.2f}x the time of md without cache",
      ms["md"] / ms["md+cache"], ms["ie+md"] / ms["md"]);
  spdlog::info("in process CPU time: {:.2f}x with the cache, ie+md {:.2f}x md",
               cpu["md"] / cpu["md+cache"], cpu["ie+md"] / cpu["md"]);
  return rows;
}

void print_rows(const std::vector<BenchRow>& rows) {
  std::cout << fmt::format("{:<8} {:<10} {:>6} {:<6} {:>7} {:<6} {:<18} {:>7} {:>11} {:>9}  {}\n",
                           "model", "size", "input", "device", "threads", "prec", "phase",
                           "repeats", "median ms", "peak MB", "detail");
  for (const auto& r : rows) {
    std::cout << fmt::format(
        "{:<8} {:<10} {:>6} {:<6} {:>7} {:<6} {:<18} {:>7} {:>11.2f} {:>9.0f}  {}\n", r.model,
        r.size, r.image_size, r.device, r.threads, r.precision, r.phase, r.repeats, r.median_ms,
        r.peak_rss_mb, r.detail);
  }
}

void write_json(const std::string& path, const std::vector<BenchRow>& rows) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows) {
    j.push_back({{"model", r.model},
                 {"size", r.size},
                 {"image_size", r.image_size},
                 {"device", r.device},
                 {"threads", r.threads},
                 {"precision", r.precision},
                 {"phase", r.phase},
                 {"repeats", r.repeats},
                 {"median_ms", r.median_ms},
                 {"peak_rss_mb", r.peak_rss_mb}});
    if (r.median_cpu_ms >= 0) j.back()["median_cpu_ms"] = r.median_cpu_ms;
    j.back().update(r.extra);
  }
  write_file_atomic(path, j.dump(2) + "\n");
}

// ---- iris bench iris: IRIS inference and training steps ----

struct IrisBenchOptions {
  std::string preset = "tiny";
  // 0 or empty: the preset's value.
  std::vector<int64_t> spatial_dims;
  int64_t size = 0;   // H = W (and D of inference volumes)
  int64_t depth = 0;  // D of 3D training patches
  int64_t base_channels = 0;
  int64_t classes = 0;
  int64_t queries = 0;
  int64_t repeats = 0;
  int64_t iterations = 0;  // > 0: also time this many training steps end to end
  bool skip_inference = false;
  bool skip_training = false;
  std::string json;
};

struct IrisBenchCase {
  models::IrisOptions model;
  int64_t size = 0, depth = 0, classes = 0, queries = 0, repeats = 0;
};

// tiny: CI-sized. paper: the Python pipeline's configuration (encoder width 16, training patches
// 16x128x128 with batch 1, inference on 128^3 volumes for 10 queries x 15 classes).
IrisBenchCase iris_bench_case(const IrisBenchOptions& o, int64_t dims) {
  IrisBenchCase c;
  c.model.spatial_dims = dims;
  if (o.preset == "tiny") {
    c.model.base_channels = 4;
    c.model.query_tokens = 4;
    c.model.heads = 2;
    c.model.decoder_layers = 1;
    c.size = 32;
    c.depth = 32;
    c.classes = 3;
    c.queries = 2;
    c.repeats = 3;
  } else if (o.preset == "paper") {
    c.model = models::IrisOptions{};  // base 16, 4 stages, 10 tokens, 8 heads, 2 layers
    c.model.spatial_dims = dims;
    c.size = 128;
    c.depth = 16;
    c.classes = 15;
    c.queries = 10;
    c.repeats = 3;
  } else {
    throw UsageError(fmt::format("--preset: expected tiny or paper, got '{}'", o.preset));
  }
  if (o.size > 0) c.size = o.size;
  if (o.depth > 0) c.depth = o.depth;
  if (o.base_channels > 0) c.model.base_channels = o.base_channels;
  if (o.classes > 0) c.classes = o.classes;
  if (o.queries > 0) c.queries = o.queries;
  if (o.repeats > 0) c.repeats = o.repeats;
  const int64_t stride = int64_t{1} << c.model.stages;
  if (c.size % stride != 0 || (dims == 3 && c.depth % stride != 0)) {
    throw UsageError(
        fmt::format("--size and --depth must be multiples of {} (2^stages), got {} and {}", stride,
                    c.size, c.depth));
  }
  if (c.model.feature_channels() % c.model.heads != 0) {
    throw UsageError(
        fmt::format("--base-channels {}: {} feature channels not divisible by {} heads",
                    c.model.base_channels, c.model.feature_channels(), c.model.heads));
  }
  return c;
}

// An image [1, 1, *S] in [0, 1] with K ball-shaped structures of their own intensity, and their
// masks [1, K, *S]: fixed inputs, so that repeats measure the same work.
std::pair<at::Tensor, at::Tensor> iris_bench_inputs(const std::vector<int64_t>& shape, int64_t k,
                                                    uint64_t seed, const c10::Device& device) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> axes;
  for (const int64_t n : shape) axes.push_back(at::arange(n, at::kFloat) / static_cast<double>(n));
  const auto grid = at::meshgrid(axes, "ij");
  const auto centres =
      at::rand({k, static_cast<int64_t>(shape.size())}, gen, at::kFloat) * 0.6 + 0.2;
  std::vector<at::Tensor> masks;
  for (int64_t c = 0; c < k; ++c) {
    at::Tensor d2 = at::zeros(shape, at::kFloat);
    for (size_t a = 0; a < shape.size(); ++a) {
      d2 = d2 + (grid[a] - centres[c][a].item<float>()).square();
    }
    masks.push_back(d2 < 0.15 * 0.15);
  }
  const at::Tensor m = at::stack(masks).to(at::kFloat).unsqueeze(0);  // [1, K, *S]
  std::vector<int64_t> level_shape{1, k};
  level_shape.insert(level_shape.end(), shape.size(), 1);
  const at::Tensor levels = at::linspace(0.3, 0.9, k, at::kFloat).view(level_shape);
  const at::Tensor noise = 0.1 * at::rand(shape, gen, at::kFloat).unsqueeze(0).unsqueeze(0);
  const at::Tensor image = ((m * levels).amax(1, /*keepdim=*/true) + noise).clamp(0.0, 1.0);
  return {image.to(device), m.to(device)};
}

void sync_device(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// CPU time of the whole process (all threads), in ms: on a shared machine it tells how much of
// the wall time was this benchmark's own work.
double process_cpu_ms() {
  return 1000.0 * static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("{}", fmt::join(shape, "x"));
}

std::vector<BenchRow> bench_iris(const IrisBenchOptions& o, const GlobalOptions& g) {
  const auto device = resolve_device(g.device);
  const Precision precision = parse_precision(precision_or_default(g));
  const std::vector<int64_t> dims_list =
      !o.spatial_dims.empty()
          ? o.spatial_dims
          : (o.preset == "paper" ? std::vector<int64_t>{3} : std::vector<int64_t>{2, 3});
  std::vector<BenchRow> rows;
  for (const int64_t dims : dims_list) {
    if (dims != 2 && dims != 3)
      throw UsageError(fmt::format("--spatial-dims: expected 2 or 3, got {}", dims));
    const IrisBenchCase c = iris_bench_case(o, dims);
    torch::manual_seed(0);
    models::IrisModel model(c.model);
    model->to(device);
    BenchRow base;
    base.model = "iris";
    base.size = fmt::format("{}-{}d", o.preset, dims);
    base.device = device.str();
    base.precision = to_string(precision);
    base.image_size = c.size;
    base.threads = at::get_num_threads();
    int64_t parameters = 0;
    for (const auto& p : model->parameters()) parameters += p.numel();
    base.extra = {{"spatial_dims", dims},
                  {"base_channels", c.model.base_channels},
                  {"classes", c.classes},
                  {"parameters", parameters}};
    auto finish = [&](BenchRow row, const std::string& phase, const std::vector<int64_t>& shape,
                      int64_t repeats, double ms) {
      row.phase = phase;
      row.repeats = repeats;
      row.median_ms = ms;
      row.peak_rss_mb = peak_rss_mb();
      row.extra["input"] = shape_string(shape);
      std::string detail = shape_string(shape);
      if (row.extra.contains("cpu_ms")) {
        detail += fmt::format(", CPU {:.0f} ms", row.extra["cpu_ms"].get<double>());
      }
      if (device.is_cuda()) {
        row.extra["cuda_peak_mb"] = cuda_peak_allocated_mb(device);
        detail += fmt::format(", CUDA peak {:.0f} MB", row.extra["cuda_peak_mb"].get<double>());
      }
      row.detail = detail + (row.detail.empty() ? "" : ", " + row.detail);
      rows.push_back(row);
    };

    // Inference: one task encoding from a reference with K classes, then Q queries segmented
    // one at a time (batch 1), the way a volume-by-volume evaluation runs.
    if (!o.skip_inference) {
      std::vector<int64_t> shape(dims, c.size);
      const auto [ref, ref_masks] = iris_bench_inputs(shape, c.classes, 1, device);
      std::vector<at::Tensor> queries;
      for (int64_t q = 0; q < c.queries; ++q) {
        queries.push_back(iris_bench_inputs(shape, c.classes, 100 + q, device).first);
      }
      model->eval();
      torch::NoGradGuard no_grad;
      AutocastScope autocast(device, precision);
      std::vector<double> total, cpu, task_ms, query_ms;
      reset_cuda_peak(device);
      for (int64_t r = -1; r < c.repeats; ++r) {  // r = -1: warm-up
        const double c0 = process_cpu_ms();
        auto t0 = std::chrono::steady_clock::now();
        const at::Tensor task = model->encode_task(ref, ref_masks);
        sync_device(device);
        const double t_task = ms_since(t0);
        std::vector<double> per_query;
        for (const auto& q : queries) {
          const auto t1 = std::chrono::steady_clock::now();
          const at::Tensor masks = model->segment(q, task).logits.gt(0);
          sync_device(device);
          per_query.push_back(ms_since(t1));
        }
        if (r < 0) continue;
        total.push_back(ms_since(t0));
        cpu.push_back(process_cpu_ms() - c0);
        task_ms.push_back(t_task);
        query_ms.insert(query_ms.end(), per_query.begin(), per_query.end());
      }
      BenchRow row = base;
      row.extra["queries"] = c.queries;
      row.extra["cpu_ms"] = median(cpu);
      row.detail = fmt::format("{} queries x {} classes", c.queries, c.classes);
      finish(row, "inference", shape, c.repeats, median(total));
      finish(base, "encode_task", shape, c.repeats, median(task_ms));
      finish(base, "segment_query", shape, static_cast<int64_t>(query_ms.size()), median(query_ms));
      spdlog::info("iris {}: inference {:.1f} ms ({} queries x {} classes)", base.size,
                   rows[rows.size() - 3].median_ms, c.queries, c.classes);
    }

    // Training: one episode per step (batch 1): task encoding and segmentation with gradients,
    // Dice + BCE, backward, gradient clipping, AdamW.
    if (!o.skip_training) {
      std::vector<int64_t> shape(dims, c.size);
      if (dims == 3) shape[0] = c.depth;
      const auto [ref, ref_masks] = iris_bench_inputs(shape, c.classes, 2, device);
      const auto [query, query_masks] = iris_bench_inputs(shape, c.classes, 3, device);
      model->train();
      torch::optim::AdamW optimizer(model->parameters(),
                                    torch::optim::AdamWOptions(1e-4).weight_decay(1e-4));
      double last_loss = 0;
      std::optional<LossScaler> scaler;
      if (precision == Precision::kFloat16) scaler.emplace();
      // As the trainer does it: forward under autocast, losses in float32, backward outside.
      auto step = [&] {
        optimizer.zero_grad();
        at::Tensor logits;
        {
          AutocastScope autocast(device, precision);
          logits = model->segment(query, model->encode_task(ref, ref_masks)).logits;
        }
        logits = logits.to(at::kFloat);
        const at::Tensor loss = soft_dice_loss(logits, query_masks) + bce_loss(logits, query_masks);
        (scaler ? scaler->scale(loss) : loss).backward();
        const bool finite = scaler ? scaler->unscale_and_check(model->parameters()) : true;
        if (finite) {
          clip_grad_norm(model->parameters(), 1.0);
          optimizer.step();
        }
        if (scaler) scaler->update(finite);
        // Reading the loss is the one host synchronisation, as when a training loop logs it.
        last_loss = loss.item<double>();
      };
      reset_cuda_peak(device);
      step();  // warm-up (allocates AdamW state)
      std::vector<double> steps, cpu;
      for (int64_t r = 0; r < c.repeats; ++r) {
        const double c0 = process_cpu_ms();
        const auto t0 = std::chrono::steady_clock::now();
        step();
        steps.push_back(ms_since(t0));
        cpu.push_back(process_cpu_ms() - c0);
      }
      BenchRow row = base;
      row.extra["cpu_ms"] = median(cpu);
      row.detail = "forward + backward + AdamW, batch 1";
      finish(row, "train_step", shape, c.repeats, median(steps));
      spdlog::info("iris {}: training step {:.1f} ms (loss {:.4f})", base.size, median(steps),
                   last_loss);
      if (o.iterations > 0) {
        const double c0 = process_cpu_ms();
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < o.iterations; ++i) step();
        const double total_ms = ms_since(t0);
        row = base;
        row.extra["cpu_ms"] = process_cpu_ms() - c0;
        row.extra["iterations"] = o.iterations;
        row.extra["total_s"] = total_ms / 1000.0;
        row.detail = fmt::format("{} steps end to end: {:.1f} s", o.iterations, total_ms / 1000.0);
        // One measurement of the whole run: its "median" is the total.
        finish(row, "train_iterations", shape, 1, total_ms);
        spdlog::info("iris {}: {} training steps in {:.1f} s", base.size, o.iterations,
                     total_ms / 1000.0);
      }
    }
  }
  return rows;
}

// ---- iris bench data: loader throughput ----

struct DataBenchOptions {
  std::vector<int64_t> loader_threads{1, 2};
  int64_t repeats = 3;  // timed epochs after one warm-up epoch
  // Surgical clips: synthetic EndoVis18-layout videos decoded from PNG, letterboxed, augmented.
  int64_t videos = 2, frames = 32, width = 480, height = 270, clip_length = 8, out_size = 384;
  // 3D patch episodes from synthetic organ-like volumes, augmented.
  int64_t cases = 4, volume_size = 64, patch = 32, classes = 3, episodes = 16;
  bool skip_video = false, skip_volumes = false;
  std::string json;
};

struct LoaderTiming {
  double wall_ms = 0, cpu_ms = 0;
  int64_t units = 0;
};

// Median epoch time of a loader over `repeats` epochs after a warm-up one; counts the units of
// one epoch through `units`.
template <typename Sample>
LoaderTiming time_loader(Loader<Sample>& loader, int64_t repeats,
                         const std::function<int64_t(const Sample&)>& units) {
  std::vector<double> epochs, cpu;
  int64_t per_epoch = 0;
  for (int64_t r = -1; r < repeats; ++r) {
    loader.start_epoch(r + 1);
    int64_t n = 0;
    const double c0 = process_cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    while (auto s = loader.next()) n += units(*s);
    if (r >= 0) {
      epochs.push_back(ms_since(t0));
      cpu.push_back(process_cpu_ms() - c0);
    }
    per_epoch = n;
  }
  return {median(epochs), median(cpu), per_epoch};
}

std::vector<BenchRow> bench_data(const DataBenchOptions& o) {
  namespace fs = std::filesystem;
  std::vector<BenchRow> rows;
  BenchRow base;
  base.model = "loader";
  base.device = "cpu";
  base.precision = "fp32";
  auto add = [&](BenchRow row, const std::string& phase, int64_t threads, const LoaderTiming& t,
                 const std::string& unit) {
    row.phase = phase;
    row.threads = static_cast<int>(threads);
    row.repeats = o.repeats;
    row.median_ms = t.wall_ms;
    row.peak_rss_mb = peak_rss_mb();
    const double rate = t.wall_ms > 0 ? t.units / (t.wall_ms / 1000.0) : 0.0;
    // Units per second of CPU time spent by the process: the rate one core sustains, which
    // stays meaningful when other jobs share the machine.
    const double cpu_rate = t.cpu_ms > 0 ? t.units / (t.cpu_ms / 1000.0) : 0.0;
    row.extra[unit + "_per_s"] = rate;
    row.extra[unit + "_per_cpu_s"] = cpu_rate;
    row.extra["cpu_ms"] = t.cpu_ms;
    row.extra["per_epoch"] = t.units;
    row.extra["torch_threads"] = at::get_num_threads();
    row.detail = fmt::format("{:.1f} {}/s, {:.1f} per CPU-second ({} per epoch)", rate, unit,
                             cpu_rate, t.units);
    rows.push_back(row);
    spdlog::info("loader {} with {} thread(s): {}", phase, threads, row.detail);
  };

  if (!o.skip_video) {
#if IRIS_HAVE_OPENCV
    const fs::path root = fs::temp_directory_path() /
                          fmt::format("iris-bench-data-{}", static_cast<long>(::getpid()));
    struct Cleanup {
      fs::path path;
      ~Cleanup() {
        std::error_code ec;
        fs::remove_all(path, ec);
      }
    } cleanup{root};
    SyntheticVideoOptions v;
    v.videos = o.videos;
    v.frames = o.frames;
    v.width = o.width;
    v.height = o.height;
    v.seed = 1;
    v.layout = VideoLayout::kEndoVis18;
    write_synthetic_videos(v, root);
    const VideoDataset dataset = read_video_dataset(root);
    ClipOptions clip_options;
    clip_options.length = clip_options.stride = o.clip_length;
    const std::vector<ClipRef> clips = enumerate_clips(dataset, clip_options);
    if (clips.empty())
      throw UsageError("bench data: no clip fits; raise --frames or lower --clip-length");
    // The training-time path: decode, letterbox, flip/rotate/scale/colour, point prompts.
    auto produce = [&](int64_t index, uint64_t seed) {
      std::mt19937_64 rng(seed);
      const ClipSample c = load_clip(dataset, clips[index], clip_options);
      AugmentOptions a;
      a.out_height = a.out_width = o.out_size;
      a.hflip_probability = a.rotate_probability = a.scale_probability = 0.5;
      a.color_probability = 0.8;
      ClipTensors clip{frames_to_float(c.frames), c.masks, {}, {}};
      clip = augment_clip(clip, a, rng);
      PromptOptions p;
      p.positive_points = p.negative_points = 1;
      for (int64_t obj = 0; obj < clip.masks.size(1); ++obj) {
        (void)simulate_prompt(clip.masks[0][obj], PromptType::kPoint, p, rng);
      }
      return clip;
    };
    BenchRow row = base;
    row.size = "clips";
    row.image_size = o.out_size;
    row.extra = {{"videos", o.videos},
                 {"clip_length", o.clip_length},
                 {"source", fmt::format("{}x{}", o.width, o.height)}};
    for (const int64_t threads : o.loader_threads) {
      LoaderOptions lo;
      lo.size = static_cast<int64_t>(clips.size());
      lo.threads = threads;
      lo.prefetch = 4;
      lo.seed = 7;
      Loader<ClipTensors> loader(produce, lo);
      const LoaderTiming t = time_loader<ClipTensors>(
          loader, o.repeats, [](const ClipTensors& c) { return c.images.size(0); });
      add(row, "surgical_clips", threads, t, "frames");
    }
#else
    spdlog::warn("bench data: surgical clips skipped (built without OpenCV)");
#endif
  }

  if (!o.skip_volumes) {
#if IRIS_HAVE_NIFTI
    SyntheticVolumeOptions v;
    v.cases = o.cases;
    v.size = o.volume_size;
    v.classes = o.classes;
    v.seed = 1;
    std::vector<Volume> images, labels;
    for (int64_t i = 0; i < o.cases; ++i) {
      auto c = make_synthetic_volume(v, i);
      images.push_back(std::move(c.image));
      labels.push_back(std::move(c.labels));
    }
    const VolumeEpisodeSampler sampler(images, labels, 20);
    const std::vector<int64_t> classes = sampler.episode_classes();
    PatchEpisodeOptions po;
    po.patch_size = {o.patch, o.patch, o.patch};
    po.classes_per_episode = o.classes;
    const PatchAugmentOptions pa;
    auto produce = [&](int64_t, uint64_t seed) {
      std::mt19937_64 rng(seed);
      return augment_patch_episode(sampler.sample(rng, classes, po), pa, rng);
    };
    BenchRow row = base;
    row.size = "patches";
    row.image_size = o.patch;
    row.extra = {{"cases", o.cases},
                 {"volume_size", o.volume_size},
                 {"classes", o.classes},
                 {"episodes", o.episodes}};
    for (const int64_t threads : o.loader_threads) {
      LoaderOptions lo;
      lo.size = o.episodes;
      lo.threads = threads;
      lo.prefetch = 4;
      lo.seed = 7;
      Loader<PatchEpisode> loader(produce, lo);
      // Reference and query patch: two volumes per episode.
      const LoaderTiming t =
          time_loader<PatchEpisode>(loader, o.repeats, [](const PatchEpisode&) { return 2; });
      add(row, "patch_episodes", threads, t, "volumes");
    }
#else
    spdlog::warn("bench data: 3D patch episodes skipped (built without NIfTI support)");
#endif
  }
  return rows;
}

// A registered benchmark subcommand and what runs it.
struct BenchCommand {
  CLI::App* command = nullptr;
  std::function<int()> run;
};

void finish_rows(const std::vector<BenchRow>& rows, const std::string& json) {
  print_rows(rows);
  if (!json.empty()) write_json(json, rows);
}

BenchCommand add_iris_bench(CLI::App& app, const GlobalOptions& globals) {
  auto o = std::make_shared<IrisBenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "iris", "IRIS inference (task encoding + Q queries x K classes) and training-step times");
  cmd->add_option("--preset", o->preset,
                  "tiny (CI-sized, 2D and 3D) or paper (width 16, 3D: training 16x128x128, "
                  "inference 128^3, 10 queries x 15 classes)")
      ->capture_default_str();
  cmd->add_option("--spatial-dims", o->spatial_dims, "2 and/or 3 (default: the preset's)");
  cmd->add_option("--size", o->size, "H = W (and D of inference volumes); 0: the preset's");
  cmd->add_option("--depth", o->depth, "D of 3D training patches; 0: the preset's");
  cmd->add_option("--base-channels", o->base_channels, "encoder width; 0: the preset's");
  cmd->add_option("--classes", o->classes, "K classes per task; 0: the preset's");
  cmd->add_option("--queries", o->queries, "Q query images per inference; 0: the preset's");
  cmd->add_option("--repeats", o->repeats, "timed repeats after one warm-up; 0: the preset's");
  cmd->add_option("--iterations", o->iterations, "also time N training steps end to end")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-inference", o->skip_inference, "time training only");
  cmd->add_flag("--no-training", o->skip_training, "time inference only");
  cmd->add_option("--json", o->json, "also write the rows as JSON");
  const GlobalOptions* g = &globals;
  return {cmd, [o, g] {
            finish_rows(bench_iris(*o, *g), o->json);
            return 0;
          }};
}

BenchCommand add_data_bench(CLI::App& app) {
  auto o = std::make_shared<DataBenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "data", "loader throughput: surgical clips (frames/s) and 3D patch episodes (volumes/s)");
  cmd->add_option("--loader-threads", o->loader_threads, "worker threads, one row each")
      ->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "timed epochs after one warm-up epoch")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--videos", o->videos, "synthetic videos")->capture_default_str();
  cmd->add_option("--frames", o->frames, "frames per video")->capture_default_str();
  cmd->add_option("--width", o->width, "source frame width")->capture_default_str();
  cmd->add_option("--height", o->height, "source frame height")->capture_default_str();
  cmd->add_option("--clip-length", o->clip_length, "frames per clip")->capture_default_str();
  cmd->add_option("--out-size", o->out_size, "letterboxed training size")->capture_default_str();
  cmd->add_option("--cases", o->cases, "synthetic volumes")->capture_default_str();
  cmd->add_option("--volume-size", o->volume_size, "voxels per side of a volume")
      ->capture_default_str();
  cmd->add_option("--patch", o->patch, "voxels per side of a patch")->capture_default_str();
  cmd->add_option("--classes", o->classes, "organ classes per volume")->capture_default_str();
  cmd->add_option("--episodes", o->episodes, "patch episodes per epoch")->capture_default_str();
  cmd->add_flag("--no-video", o->skip_video, "skip the surgical clips");
  cmd->add_flag("--no-volumes", o->skip_volumes, "skip the 3D patch episodes");
  cmd->add_option("--json", o->json, "also write the rows as JSON");
  return {cmd, [o] {
            for (const int64_t t : o->loader_threads) {
              if (t < 0) throw UsageError("--loader-threads must be >= 0");
            }
            for (const int64_t v :
                 {o->videos, o->frames, o->width, o->height, o->clip_length, o->out_size, o->cases,
                  o->volume_size, o->patch, o->classes, o->episodes}) {
              if (v < 1) throw UsageError("bench data: sizes and counts must be >= 1");
            }
            if (o->cases < 2) throw UsageError("--cases: patch episodes need at least 2 volumes");
            finish_rows(bench_data(*o), o->json);
            return 0;
          }};
}

}  // namespace

std::function<int()> setup_bench(CLI::App& app, const GlobalOptions& globals) {
  app.require_subcommand(1);
  auto s = std::make_shared<Sam2BenchOptions>();
  auto tr = std::make_shared<TrainBenchOptions>();
  CLI::App* train_cmd = app.add_subcommand(
      "train",
      "SAM2 fine-tuning time per epoch on synthetic clips: recipe md without and with the "
      "frozen-encoder feature cache, and ie+md");
  train_cmd->add_option("--size", tr->size, "official size (random weights): tiny, small, ...")
      ->capture_default_str();
  train_cmd->add_option("--config", tr->config, "an official-format config instead of --size");
  train_cmd->add_option("--checkpoint", tr->checkpoint, "starting weights (default: random)");
  train_cmd->add_option("--image-size", tr->image_size, "model input size (0: the config's)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  train_cmd->add_option("--videos", tr->videos, "synthetic training and validation videos")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  train_cmd->add_option("--frames", tr->frames, "frames per training video")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  train_cmd->add_option("--clip-length", tr->clip_length, "frames per training clip")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  train_cmd->add_option("--epochs", tr->epochs, "epochs per variant (>= 2)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1000));
  train_cmd->add_option("--json", tr->json, "also write the rows as JSON");
  CLI::App* sam2_cmd = app.add_subcommand(
      "sam2", "SAM2 image-encoder time and tracking-step time per frame (median over repeats)");
  sam2_cmd->add_option("--size", s->sizes, "official sizes: tiny, small, base_plus, large")
      ->capture_default_str();
  sam2_cmd->add_option("--config", s->config, "an official-format config instead of --size");
  sam2_cmd->add_option("--checkpoint", s->checkpoint, "weights (timings do not depend on them)");
  sam2_cmd->add_option("--image-size", s->image_sizes, "input sizes (multiples of 32)")
      ->capture_default_str();
  sam2_cmd->add_option("--frames", s->frames, "frames tracked per measurement")
      ->capture_default_str()
      ->check(CLI::Range(2, 1000));
  sam2_cmd->add_option("--repeats", s->repeats, "image-encoder repeats after one warm-up")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  sam2_cmd->add_option("--json", s->json, "also write the rows as JSON");
  const GlobalOptions* g = &globals;
  const BenchCommand iris_bench = add_iris_bench(app, globals);
  const BenchCommand data_bench = add_data_bench(app);
  return [s, sam2_cmd, tr, train_cmd, g, iris_bench, data_bench]() -> int {
    if (train_cmd->parsed()) {
      if (tr->image_size % 32 != 0) {
        throw UsageError(
            fmt::format("--image-size must be a multiple of 32, got {}", tr->image_size));
      }
      const auto rows = bench_train(*tr, *g);
      print_rows(rows);
      if (!tr->json.empty()) write_json(tr->json, rows);
      return 0;
    }
    if (sam2_cmd->parsed()) {
      for (const auto size : s->image_sizes) {
        if (size <= 0 || size % 32 != 0) {
          throw UsageError(
              fmt::format("--image-size must be a positive multiple of 32, got {}", size));
        }
      }
      const auto rows = bench_sam2(*s, *g);
      print_rows(rows);
      if (!s->json.empty()) write_json(s->json, rows);
      return 0;
    }
    if (iris_bench.command->parsed()) return iris_bench.run();
    if (data_bench.command->parsed()) return data_bench.run();
    throw UsageError("bench: expected a benchmark: sam2, iris, train or data");
  };
}

}  // namespace iris::cli
