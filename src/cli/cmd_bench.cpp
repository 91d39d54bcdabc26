#include "cli/cmd_bench.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/device.h"
#include "core/error.h"
#include "core/resources.h"
#include "data/synthetic_video.h"
#include "io/checkpoint.h"
#include "io/model_state.h"
#include "models/sam2/sam2_config.h"
#include "models/sam2/sam2_model.h"
#include "models/sam2/video_predictor.h"
#include "train/sam2_trainer.h"

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
};

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

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
  std::vector<BenchRow> rows;
  const std::vector<std::string> sizes =
      o.config.empty() ? o.sizes : std::vector<std::string>{"config"};
  for (const auto& size : sizes) {
    for (const int64_t image_size : o.image_sizes) {
      auto options = o.config.empty() ? sam2::official_sam2_options(size)
                                      : sam2::load_sam2_config(o.config);
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
      base.precision = "fp32";
      base.image_size = image_size;
      base.threads = at::get_num_threads();

      // Image encoder: one frame, one warm-up run, median over the repeats.
      std::vector<double> enc;
      {
        torch::NoGradGuard guard;  // not InferenceMode: cached constants must stay usable in training
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
    row.precision = "fp32";
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
  std::cout << fmt::format("{:<8} {:<10} {:>6} {:<6} {:>7} {:<6} {:<18} {:>7} {:>11} {:>9}\n",
                           "model", "size", "input", "device", "threads", "prec", "phase",
                           "repeats", "median ms", "peak MB");
  for (const auto& r : rows) {
    std::cout << fmt::format(
        "{:<8} {:<10} {:>6} {:<6} {:>7} {:<6} {:<18} {:>7} {:>11.2f} {:>9.0f}\n", r.model, r.size,
        r.image_size, r.device, r.threads, r.precision, r.phase, r.repeats, r.median_ms,
        r.peak_rss_mb);
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
  }
  write_file_atomic(path, j.dump(2) + "\n");
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
  return [s, sam2_cmd, tr, train_cmd, g]() -> int {
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
          throw UsageError(fmt::format("--image-size must be a positive multiple of 32, got {}", size));
        }
      }
      const auto rows = bench_sam2(*s, *g);
      print_rows(rows);
      if (!s->json.empty()) write_json(s->json, rows);
      return 0;
    }
    throw UsageError("bench: expected a benchmark: sam2, train");
  };
}

}  // namespace iris::cli
