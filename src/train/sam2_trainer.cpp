#include "train/sam2_trainer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
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
#include "data/clips.h"
#include "data/prompts.h"
#include "data/video_dataset.h"
#include "dist/gradient_sync.h"
#include "dist/process_group.h"
#include "dist/sampler.h"
#include "eval/video_eval.h"
#include "io/checkpoint.h"
#include "io/model_state.h"
#include "models/sam2/feature_cache.h"
#include "models/sam2/sam2_loader.h"
#include "models/sam2/sam2_predict.h"
#include "track/tensorboard.h"
#include "train/recipes.h"
#include "train/resume.h"
#include "train/sam2_loss.h"
#include "train/schedule.h"

namespace iris {
namespace {

namespace sam2 = models::sam2;
namespace F = torch::nn::functional;
using Clock = std::chrono::steady_clock;

// The official modules a recipe's groups stand for (the study's `trainable_modules` vocabulary).
std::vector<std::string> trainable_modules(const Recipe& recipe) {
  std::vector<std::string> m;
  if (recipe.trains("mem")) m.insert(m.end(), {"memory_encoder", "memory_attention"});
  if (recipe.trains("md")) m.push_back("mask_decoder");
  if (recipe.trains("pe")) m.push_back("prompt_encoder");
  if (recipe.trains("ie")) m.push_back("image_encoder");
  return m;
}

// Everything the epochs after `epoch` depend on besides the config, the weights and the
// optimiser; saved with them in checkpoints/resume.pt after every epoch. A clip's prompts and
// dropout are seeded by (seed, epoch, clip) and the schedule by the step, so an epoch boundary
// is an exact resume point.
struct Sam2TrainState {
  int64_t epoch = 0;
  int64_t step = 0;
  double best = std::numeric_limits<double>::quiet_NaN();
  int64_t best_epoch = 0;
  bool model_is_best = true;
  double baseline_dice = 0.0;
  nlohmann::json best_row = nlohmann::json::object();
  std::vector<double> epoch_train_seconds, epoch_val_seconds, epoch_cpu_seconds;
  double seconds = 0.0;  // the sessions before this one
  double peak_gpu_mb = 0.0;
};

at::Tensor doubles(const std::vector<double>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble));
}

std::vector<double> doubles(const at::Tensor& t) {
  const auto c = t.to(at::kDouble).contiguous().cpu();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

bool run_finished(const RunDir& run) {
  if (!fs::is_regular_file(run.summary_path())) return false;
  const auto summary = run.read_summary();
  return summary.is_object() && summary.value("state", std::string()) == "finished";
}

// Written to a string first, then through write_file_atomic: a crash keeps the previous state.
void save_sam2_state(torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                     const LossScaler* scaler, const Sam2TrainState& state, const fs::path& path) {
  torch::serialize::OutputArchive archive;
  model.save(archive);
  save_optimizer(archive, optimizer);
  archive.write("state/epoch", c10::IValue(state.epoch));
  archive.write("state/step", c10::IValue(state.step));
  archive.write("state/best", c10::IValue(state.best));
  archive.write("state/best_epoch", c10::IValue(state.best_epoch));
  archive.write("state/model_is_best", c10::IValue(state.model_is_best));
  archive.write("state/baseline_dice", c10::IValue(state.baseline_dice));
  archive.write("state/best_row", c10::IValue(state.best_row.dump()));
  archive.write("state/epoch_train_seconds", doubles(state.epoch_train_seconds));
  archive.write("state/epoch_val_seconds", doubles(state.epoch_val_seconds));
  archive.write("state/epoch_cpu_seconds", doubles(state.epoch_cpu_seconds));
  archive.write("state/seconds", c10::IValue(state.seconds));
  archive.write("state/peak_gpu_mb", c10::IValue(state.peak_gpu_mb));
  save_cpu_generator(archive);
  save_scaler(archive, scaler);
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

// Restores the model's weights, the optimiser and the scaler from save_sam2_state's file, onto
// `device`.
Sam2TrainState load_sam2_state(const fs::path& path, const c10::Device& device,
                               torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                               LossScaler* scaler) {
  if (!fs::is_regular_file(path)) {
    throw InputError(
        file_message(path.string(), "no state to resume from (written at the end of every epoch)"));
  }
  Sam2TrainState state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string(), device);
    model.load(archive);
    load_optimizer(archive, optimizer);
    state.epoch = read_value(archive, "state/epoch").toInt();
    state.step = read_value(archive, "state/step").toInt();
    state.best = read_value(archive, "state/best").toDouble();
    state.best_epoch = read_value(archive, "state/best_epoch").toInt();
    state.model_is_best = read_value(archive, "state/model_is_best").toBool();
    state.baseline_dice = read_value(archive, "state/baseline_dice").toDouble();
    state.best_row = nlohmann::json::parse(read_value(archive, "state/best_row").toStringRef());
    auto read_doubles = [&](const char* key) {
      at::Tensor t;
      archive.read(key, t);
      return doubles(t);
    };
    state.epoch_train_seconds = read_doubles("state/epoch_train_seconds");
    state.epoch_val_seconds = read_doubles("state/epoch_val_seconds");
    state.epoch_cpu_seconds = read_doubles("state/epoch_cpu_seconds");
    state.seconds = read_value(archive, "state/seconds").toDouble();
    state.peak_gpu_mb = read_value(archive, "state/peak_gpu_mb").toDouble();
    load_cpu_generator(archive);
    load_scaler(archive, scaler);
  } catch (const c10::Error& e) {
    throw InputError(file_message(
        path.string(), std::string("not a resumable SAM2 state: ") + e.what_without_backtrace()));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(
        file_message(path.string(), std::string("not a resumable SAM2 state: ") + e.what()));
  }
  return state;
}

io::StateDict model_state(torch::nn::Module& m) {
  io::StateDict sd;
  for (const auto& p : m.named_parameters())
    sd.insert(p.key(), p.value().detach().cpu().contiguous());
  for (const auto& b : m.named_buffers()) sd.insert(b.key(), b.value().detach().cpu().contiguous());
  return sd;
}

nlohmann::json eval_row(const eval::VideoEvalResult& r, const std::string& prefix = "eval/") {
  auto v = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
  return {{prefix + "Dice", v(r.dice_summary.macro)},
          {prefix + "mIoU", v(r.iou_summary.macro)},
          {prefix + "MAE", v(r.mae_summary.macro)},
          {prefix + "NSD", v(r.nsd_summary.macro)}};
}

}  // namespace

void Sam2TrainConfig::visit(ConfigVisitor& v) {
  v.section("run", run);
  v.field("recipe", recipe,
          "SAM2 parts that train, joined by '+': ie, pe, md, mem (none: baseline)");
  v.field("baseline", baseline, "the untrained reference run (recipe none, max_epochs 0)");
  v.section("model", [&](ConfigVisitor& m) {
    m.field("config", model.config, "official-format SAM2 config (YAML)");
    m.field("checkpoint", model.checkpoint, "starting weights (.pt or .safetensors)");
    m.choice("prompt_type", model.prompt_type, {"point", "box", "mask"},
             "prompt on the first frame");
    m.field("trainable_modules", model.trainable_modules,
            "derived from the recipe; written for trackers");
  });
  v.section("data", [&](ConfigVisitor& d) {
    d.field("name", data.name, "dataset name for run tables");
    d.field("train", data.train, "training videos (native layout or COCO-video JSON)");
    d.field("val", data.val, "validation videos (never the test split)");
    d.field("test", data.test, "test videos, scored once with the best weights (empty: none)");
    d.field("clip_length", data.clip_length, "frames per training clip");
    d.field("clip_stride", data.clip_stride, "frames between the starts of consecutive clips");
    d.field("val_max_frames", data.val_max_frames, "frames per validation video (0: all)");
  });
  v.section("train", [&](ConfigVisitor& t) {
    t.field("max_epochs", train.max_epochs, "epochs (0: evaluate the untrained model only)");
    t.field("lr", train.lr, "peak learning rate (AdamW)");
    t.field("weight_decay", train.weight_decay, "decoupled weight decay");
    t.field("warmup", train.warmup, "linear warmup steps");
    t.choice("schedule", train.schedule, {"cosine", "exponential", "constant"},
             "decay after warmup");
    t.field("final_lr_ratio", train.final_lr_ratio, "learning rate at the end / peak");
    t.field("grad_clip", train.grad_clip, "max gradient norm (0: off)");
    t.field("grad_accum", train.grad_accum, "clips per optimiser step, over all ranks");
    t.choice("feature_cache", train.feature_cache, {"auto", "off", "memory", "disk"},
             "frozen-encoder features reused across epochs (auto: memory when the encoder is "
             "frozen and frames are not augmented; disk: also across runs)");
    t.field("cache_dir", train.cache_dir, "disk tier folder (empty: <run.root>/.feature_cache)");
    t.field("cache_budget_mb", train.cache_budget_mb, "memory tier budget (MiB, LRU)");
    t.field("cache_disk_budget_mb", train.cache_disk_budget_mb, "disk tier budget (MiB, LRU)");
  });
  v.section("loss", [&](ConfigVisitor& l) {
    l.field("mask", loss.mask, "focal loss weight");
    l.field("dice", loss.dice, "Dice loss weight");
    l.field("iou", loss.iou, "IoU-prediction loss weight");
    l.field("class", loss.cls, "object-score loss weight");
  });
}

Sam2TrainResult train_sam2(const Sam2TrainConfig& config, const sam2::Sam2Model* prebuilt,
                           dist::DistContext* group) {
  TrainSession session;
  session.dist = group;
  return train_sam2(config, session, prebuilt);
}

Sam2TrainResult train_sam2(const Sam2TrainConfig& config, const TrainSession& session,
                           const sam2::Sam2Model* prebuilt) {
  const auto start = Clock::now();
  dist::DistContext* group = session.dist;
  const bool resuming = !session.resume.empty();
  const auto& groups = sam2_parameter_groups();
  const Recipe recipe = parse_recipe(config.recipe, groups);
  if (config.train.max_epochs < 0 || config.train.grad_accum < 1 || config.data.clip_length < 1) {
    throw ConfigError("train.max_epochs must be >= 0, train.grad_accum and data.clip_length >= 1");
  }
  if (config.baseline && (config.train.max_epochs != 0 || !recipe.groups.empty())) {
    throw ConfigError("baseline: true needs recipe none and train.max_epochs 0");
  }
  const int rank = group ? group->rank() : 0, world_size = group ? group->world_size() : 1;
  if (config.train.grad_accum < world_size) {
    throw ConfigError(fmt::format(
        "train.grad_accum {} is the global batch (clips per optimiser step over all ranks): at "
        "least one clip per rank ({} ranks)",
        config.train.grad_accum, world_size));
  }
  // Only rank 0 writes into the run folder; all ranks read a resumed run's state.
  std::optional<RunDir> run_folder;
  Sam2TrainConfig resolved = config;
  resolved.model.trainable_modules = trainable_modules(recipe);
  if (resuming) {
    if (!fs::is_regular_file(fs::path(session.resume) / "config.yaml")) {
      throw InputError(file_message(session.resume, "not a run folder to resume (no config.yaml)"));
    }
    run_folder = RunDir::existing(session.resume);
    // The run's own config decides; only where it runs may change.
    resolved = config_for_resume(*run_folder, resolved);
  } else if (rank == 0) {
    resolved.run.name = config.run.name.empty() ? generated_run_name("sam2") : config.run.name;
    run_folder = RunDir::open(config.run.root, resolved.run.name, RunDir::Mode::kCreate);
    run_folder->write_config(dump_config(resolved));
  }
  const RunDir* run = rank == 0 ? &*run_folder : nullptr;
  if (run) log_to_file(run->log_path());
  c10::Device device = resolve_device(config.run.device);
  if (group && device.is_cuda()) {
    device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(group->local_rank()));
  }
  set_threads(config.run.threads);
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  const Precision precision = parse_precision(config.run.precision);
  std::optional<LossScaler> scaler;
  if (precision == Precision::kFloat16) {
    LossScalerOptions scaler_options;
    scaler_options.init_scale = config.run.loss_scale;
    scaler.emplace(scaler_options);
  }
  if (config.run.channels_last) {
    spdlog::info("run.channels_last: SAM2 is attention-bound, its layout stays contiguous");
  }

  auto model = prebuilt ? *prebuilt : sam2::load_sam2(config.model.config, config.model.checkpoint);
  model->to(device);
  // Same starting weights everywhere, also when a prebuilt model differs between ranks.
  if (group) group->broadcast(model->parameters());
  const auto applied = apply_recipe(*model, groups, recipe);
  const auto prompt_type = parse_prompt_type(config.model.prompt_type);
  const auto train_data = read_video_dataset(config.data.train);
  const auto val_data = read_video_dataset(config.data.val);
  std::optional<VideoDataset> test_data;
  if (!config.data.test.empty()) test_data = read_video_dataset(config.data.test);
  ClipOptions clip_options = default_clip_options(train_data.layout);
  clip_options.length = config.data.clip_length;
  clip_options.stride = config.data.clip_stride;
  const auto clips = enumerate_clips(train_data, clip_options);
  if (config.train.max_epochs > 0 && clips.empty()) {
    throw InputError(
        file_message(config.data.train, fmt::format("no clip of {} frames", clip_options.length)));
  }
  spdlog::info(
      "SAM2 fine-tuning: recipe {} ({} of {} parameters train), {} clips of {} frames, {} prompts; "
      "run {}{}",
      recipe.name(), applied.trainable_elements,
      applied.trainable_elements + applied.frozen_elements, clips.size(), clip_options.length,
      config.model.prompt_type, run ? run->path().string() : "(rank 0's)",
      group ? fmt::format(", {} ranks", world_size) : std::string());

  // Frozen-encoder features: constants of a frame when nothing in front of the heads trains
  // and the clip frames are not augmented (this trainer does not augment them).
  const auto cache_decision = sam2::decide_feature_cache(*model, /*augmented_input=*/false);
  std::shared_ptr<sam2::FeatureCache> feature_cache;
  std::string cache_tier = "off", cache_reason = cache_decision.reason;
  if (config.train.feature_cache == "off") {
    cache_reason = "train.feature_cache is off";
  } else if (cache_decision.valid) {
    if (config.train.cache_budget_mb < 0 || config.train.cache_disk_budget_mb < 0) {
      throw ConfigError("train.cache_budget_mb and train.cache_disk_budget_mb must be >= 0");
    }
    cache_tier = config.train.feature_cache == "disk" ? "disk" : "memory";
    sam2::FeatureCacheOptions cache_options;
    cache_options.memory_budget_bytes = config.train.cache_budget_mb << 20;
    cache_options.disk_budget_bytes = config.train.cache_disk_budget_mb << 20;
    if (cache_tier == "disk") {
      cache_options.disk_dir = config.train.cache_dir.empty()
                                   ? std::filesystem::path(config.run.root) / ".feature_cache"
                                   : std::filesystem::path(config.train.cache_dir);
      // One folder per rank: ranks never write the same file.
      if (world_size > 1) cache_options.disk_dir /= fmt::format("rank{}", rank);
    }
    feature_cache = std::make_shared<sam2::FeatureCache>(cache_options);
  }
  if (cache_tier != "off") {
    spdlog::info("feature cache: {} ({} MiB{}): {}", cache_tier, config.train.cache_budget_mb,
                 cache_tier == "disk"
                     ? fmt::format(", folder {}", feature_cache->options().disk_dir.string())
                     : std::string(),
                 cache_reason);
  } else if (config.train.feature_cache == "memory" || config.train.feature_cache == "disk") {
    spdlog::warn("feature cache: off although train.feature_cache is {}: {}",
                 config.train.feature_cache, cache_reason);
  } else {
    spdlog::info("feature cache: off: {}", cache_reason);
  }
  const auto encoder =
      std::make_shared<sam2::CachedImageEncoder>(model, cache_decision, feature_cache);

  Sam2TrainResult result;
  result.feature_cache = cache_tier;
  result.feature_cache_reason = cache_reason;
  eval::VideoEvalOptions eval_options;
  if (feature_cache) eval_options.encoder = encoder;
  eval_options.prompt = prompt_type;
  eval_options.seed = static_cast<uint64_t>(config.run.seed);
  eval_options.max_frames = config.data.val_max_frames;
  // Rank 0's: the other ranks go on to the next step's all-reduce and wait for it there.
  auto validate = [&](int64_t epoch, int64_t step) {
    const auto v0 = Clock::now();
    model->eval();
    const auto r = eval::evaluate_sam2_video(model, val_data, eval_options);
    model->train();
    auto row = eval_row(r);
    row["epoch"] = epoch;
    row["step"] = step;
    run->append_metrics(row);
    if (epoch > 0) {
      result.epoch_val_seconds.push_back(std::chrono::duration<double>(Clock::now() - v0).count());
    }
    return r;
  };

  result.trainable_parameters = applied.trainable_elements;
  std::vector<at::Tensor> trainable;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  // Each epoch's clips in an order fixed by (seed, epoch), each step's share cut by rank.
  const dist::DistributedSampler sampler(static_cast<int64_t>(clips.size()),
                                         config.train.grad_accum, rank, world_size,
                                         static_cast<uint64_t>(config.run.seed));
  const int64_t steps_per_epoch = sampler.steps_per_epoch();
  dist::GradientSync gradients(trainable, group);
  const LrSchedule schedule{config.train.lr, config.train.warmup,
                            std::max<int64_t>(1, steps_per_epoch * config.train.max_epochs),
                            config.train.schedule, config.train.final_lr_ratio};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  if (!trainable.empty()) {
    optimizer = std::make_unique<torch::optim::AdamW>(
        trainable,
        torch::optim::AdamWOptions(config.train.lr).weight_decay(config.train.weight_decay));
  }
  LossScaler* const scaler_ptr = scaler ? &*scaler : nullptr;
  const fs::path state_path = run_folder ? run_folder->checkpoints_dir() / "resume.pt" : fs::path();
  Sam2TrainState state;
  if (resuming) {
    state = load_sam2_state(state_path, device, *model, optimizer.get(), scaler_ptr);
    result.run_dir = run ? run->path().string() : std::string();
    result.resumed_from_epoch = state.epoch;
    result.baseline_dice = state.baseline_dice;
    result.best_epoch = state.best_epoch;
    result.epoch_train_seconds = state.epoch_train_seconds;
    result.epoch_val_seconds = state.epoch_val_seconds;
    result.epoch_cpu_seconds = state.epoch_cpu_seconds;
    // A run stopped after its last epoch's state but before its summary still ends below.
    if (state.epoch >= config.train.max_epochs && run_finished(*run_folder)) {
      spdlog::info("run {} already finished all {} epochs; nothing to resume", session.resume,
                   config.train.max_epochs);
      result.steps = state.step;
      result.best_dice = state.best;
      result.seconds = state.seconds;
      result.finished = result.already_finished = true;
      if (run) stop_log_file();
      return result;
    }
    if (run) truncate_metrics(*run, state.step);
    spdlog::info("resuming {} at epoch {} of {}", session.resume, state.epoch + 1,
                 config.train.max_epochs);
  }
  std::optional<track::TensorBoardWriter> tensorboard;
  double best = state.best;
  nlohmann::json best_row = state.best_row;
  if (run) {
    result.run_dir = run->path().string();
    tensorboard.emplace(run->path() / "tb");
    if (!resuming) {
      const auto baseline = validate(0, 0);
      result.baseline_dice = baseline.dice_summary.macro;
      best = result.baseline_dice;
      best_row = eval_row(baseline);
      spdlog::info("epoch 0 (untrained): validation Dice {:.4f}", result.baseline_dice);
      io::write_safetensors(run->checkpoints_dir() / "best.safetensors", model_state(*model));
      // Epoch 0 is a resume point too: an interrupted first epoch keeps its baseline.
      state.best = best;
      state.baseline_dice = result.baseline_dice;
      state.best_row = best_row;
      state.seconds = std::chrono::duration<double>(Clock::now() - start).count();
      save_sam2_state(*model, optimizer.get(), scaler_ptr, state, state_path);
    }
  }
  Sam2LossOptions loss_options;
  loss_options.weight_mask = config.loss.mask;
  loss_options.weight_dice = config.loss.dice;
  loss_options.weight_iou = config.loss.iou;
  loss_options.weight_class = config.loss.cls;
  loss_options.pred_obj_scores = model->config().pred_obj_scores;
  const int64_t s = model->image_size();

  int64_t step = state.step;
  const double previous_seconds = resuming ? state.seconds : 0.0;
  bool model_is_best = state.model_is_best;
  double run_peak_gpu_mb = state.peak_gpu_mb;
  for (int64_t epoch = state.epoch + 1; epoch <= config.train.max_epochs && optimizer; ++epoch) {
    model->train();
    // This rank's clips of the epoch as (step, clip); clip -1 marks a step without a clip here,
    // which still joins that step's all-reduce.
    std::vector<std::pair<int64_t, int64_t>> work;
    int64_t rank_clips = 0;
    for (int64_t si = 0; si < steps_per_epoch; ++si) {
      const auto mine = sampler.indices(epoch, si);
      if (mine.empty()) work.emplace_back(si, -1);
      for (const int64_t ci : mine) work.emplace_back(si, ci);
      rank_clips += static_cast<int64_t>(mine.size());
    }
    Progress progress(fmt::format("sam2 epoch {}", epoch), rank_clips, "clip");
    double loss_sum = 0.0, step_loss = 0.0, step_data_ms = 0.0;
    int64_t used = 0, step_used = 0;
    // This rank's clip losses of the step, summed on the device and read back once per step.
    const auto loss_options_device = torch::TensorOptions().dtype(torch::kDouble).device(device);
    at::Tensor step_loss_sum = torch::zeros({}, loss_options_device);
    auto step_start = Clock::now();
    reset_cuda_peak(device);
    const auto epoch_start = Clock::now();
    const std::clock_t epoch_cpu_start = std::clock();
    // The gradient sync point: sums over the ranks, then one optimiser step everywhere.
    auto finish_step = [&] {
      // The gradient reduction left after backward (what overlapping did not hide).
      const auto sync_start = Clock::now();
      gradients.finish();
      double sync_ms = std::chrono::duration<double, std::milli>(Clock::now() - sync_start).count();
      step_loss = step_loss_sum.item<double>();  // the step's readback: logged
      step_loss_sum.zero_();
      if (group) {
        const auto sums = group->all_reduce_sum(
            std::vector<double>{step_loss, static_cast<double>(step_used), step_data_ms, sync_ms});
        step_loss = sums[0];
        step_used = static_cast<int64_t>(sums[1]);
        step_data_ms = sums[2] / world_size;  // per rank: the ranks load side by side
        sync_ms = sums[3] / world_size;
      }
      ++step;
      const double lr = schedule.lr(step);
      for (auto& param_group : optimizer->param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(param_group.options()).lr(lr);
      }
      // All ranks hold the same summed gradients, so they take the same decision.
      const bool finite = scaler ? scaler->unscale_and_check(trainable) : true;
      if (finite) {
        if (config.train.grad_clip > 0) clip_grad_norm(trainable, config.train.grad_clip);
        optimizer->step();
      } else {
        spdlog::warn("step {}: non-finite fp16 gradients at loss scale {}; step skipped", step,
                     scaler->scale_value());
      }
      const double loss_scale = scaler ? scaler->scale_value() : 1.0;
      if (scaler) scaler->update(finite);
      gradients.zero();
      loss_sum += step_loss;
      used += step_used;
      const double mean_loss =
          step_used > 0 ? step_loss / static_cast<double>(step_used) : std::nan("");
      if (run) {
        const double ms =
            std::chrono::duration<double, std::milli>(Clock::now() - step_start).count();
        nlohmann::json row{{"step", step},
                           {"epoch", epoch},
                           {"train/loss", mean_loss},
                           {"lr", lr},
                           {"time/data_ms", step_data_ms},
                           {"time/sync_ms", sync_ms},
                           {"time/step_ms", ms},
                           {"memory/rss_mb", current_rss_mb()}};
        if (device.is_cuda()) row["memory/peak_gpu_mb"] = cuda_peak_allocated_mb(device);
        if (scaler) {
          row["skipped_step"] = !finite;
          row["loss_scale"] = loss_scale;
        }
        run->append_metrics(row);
        tensorboard->add_scalars({{"train/loss", mean_loss}, {"lr", lr}}, step);
      }
      run_peak_gpu_mb = std::max(run_peak_gpu_mb, cuda_peak_allocated_mb(device));
      reset_cuda_peak(device);
      step_loss = step_data_ms = 0.0;
      step_used = 0;
      step_start = Clock::now();
    };
    gradients.zero();
    for (size_t oi = 0; oi < work.size(); ++oi) {
      if (oi > 0 && work[oi].first != work[oi - 1].first) finish_step();
      const int64_t ci = work[oi].second;
      if (ci < 0) continue;
      const auto t0 = Clock::now();
      // A clip's prompts and dropout depend on (seed, epoch, clip) only, not on the rank that
      // runs it or on the clips before it.
      const uint64_t clip_seed =
          dist::sample_seed(static_cast<uint64_t>(config.run.seed), epoch, ci);
      std::mt19937_64 rng(clip_seed);
      torch::manual_seed(clip_seed);
      const auto clip = load_clip(train_data, clips[static_cast<size_t>(ci)], clip_options);
      // Objects prompted on the clip's first frame; later ones are not supervised in this clip.
      std::vector<int64_t> objs;
      for (size_t k = 0; k < clip.objects.size(); ++k) {
        if (clip.objects[k].prompt_frame == 0) objs.push_back(static_cast<int64_t>(k));
      }
      progress.advance();
      if (objs.empty()) continue;
      const int64_t T = clip.frames.size(0), H = clip.frames.size(1), W = clip.frames.size(2),
                    N = objs.size();
      std::vector<at::Tensor> images;
      for (int64_t t = 0; t < T; ++t) images.push_back(clip.frames[t]);
      const auto inputs = to_device(sam2::preprocess_frames(images, s), device);
      const auto masks =
          clip.masks.index_select(1, torch::tensor(objs)).to(torch::kFloat);  // [T, N, H, W]
      const auto targets = to_device(
          F::interpolate(
              masks,
              F::InterpolateFuncOptions().size(std::vector<int64_t>{s, s}).mode(torch::kNearest)),
          device);  // [T, N, S, S]
      // Prompts from the first frame's ground truth, in model-input pixels.
      std::optional<sam2::PointInputs> points;
      at::Tensor mask_inputs;
      std::vector<at::Tensor> coords, labels, mask_list;
      for (const auto k : objs) {
        const auto p = simulate_prompt(clip.masks[0][k], prompt_type, PromptOptions{}, rng);
        if (!p) continue;
        if (prompt_type == PromptType::kPoint) {
          coords.push_back(p->point_coords);
          labels.push_back(p->point_labels);
        } else if (prompt_type == PromptType::kBox) {
          coords.push_back(p->box.view({2, 2}));
          labels.push_back(torch::tensor({2, 3}, torch::kInt32));
        } else {
          mask_list.push_back(targets[0][static_cast<int64_t>(mask_list.size())].unsqueeze(0));
        }
      }
      if (prompt_type == PromptType::kMask) {
        if (static_cast<int64_t>(mask_list.size()) != N) continue;
        mask_inputs = torch::stack(mask_list);  // [N, 1, S, S]
      } else {
        if (static_cast<int64_t>(coords.size()) != N) continue;
        const auto scale = torch::tensor({float(s) / W, float(s) / H});
        points = sam2::PointInputs{to_device(torch::stack(coords) * scale, device),
                                   to_device(torch::stack(labels), device)};
      }
      const auto data_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

      sam2::ObjectMemory memory;
      at::Tensor clip_loss = torch::zeros({}, torch::TensorOptions().device(device));
      for (int64_t t = 0; t < T; ++t) {
        // Cached features are computed in float32 whatever the run's precision, so the cache
        // (shared across runs on disk) never depends on it.
        std::optional<AutocastScope> autocast;
        if (!feature_cache) autocast.emplace(device, precision);
        // A frozen encoder runs without a graph (its features are constants of the step) or
        // comes from the cache; conv_s0/conv_s1 keep theirs when the mask decoder trains.
        auto backbone = encoder->forward_image(
            inputs.slice(0, t, t + 1),
            {train_data.root.string(), clip.video_id, clip.frame_indices[static_cast<size_t>(t)]});
        for (auto& f : backbone.backbone_fpn) f = f.expand({N, -1, -1, -1});
        for (auto& p : backbone.vision_pos_enc) p = p.expand({N, -1, -1, -1});
        if (!autocast) autocast.emplace(device, precision);
        const auto features = model->prepare_backbone_features(backbone);
        auto out = t == 0 ? model->track_step(0, true, features, points, mask_inputs, memory, T,
                                              false, true)
                          : model->track_step(t, false, features, std::nullopt, at::Tensor(),
                                              memory, T, false, true);
        // The loss in float32 whatever the autocast precision.
        const auto l = sam2_frame_loss(
            {{out.pred_multimasks_high_res.to(torch::kFloat), out.ious.to(torch::kFloat),
              out.object_score_logits.to(torch::kFloat)}},
            targets[t], loss_options);
        clip_loss = clip_loss + l.total / static_cast<double>(T);
        if (t == 0) {
          memory.set_cond(0, std::move(out));
        } else {
          memory.non_cond_frame_outputs[t] = std::move(out);
        }
      }
      const at::Tensor micro_loss = clip_loss / static_cast<double>(config.train.grad_accum);
      // The rank's last clip of the step overlaps its backward with the all-reduce.
      const bool last_of_step = oi + 1 == work.size() || work[oi + 1].first != work[oi].first;
      gradients.backward(scaler ? scaler->scale(micro_loss) : micro_loss, last_of_step);
      step_loss_sum += clip_loss.detach().to(torch::kDouble);
      step_data_ms += data_ms;
      ++step_used;
    }
    if (!work.empty()) finish_step();
    progress.finish();
    result.epoch_train_seconds.push_back(
        std::chrono::duration<double>(Clock::now() - epoch_start).count());
    result.epoch_cpu_seconds.push_back(static_cast<double>(std::clock() - epoch_cpu_start) /
                                       CLOCKS_PER_SEC);
    if (run) {
      const auto r = validate(epoch, step);
      result.epoch_cpu_seconds.back() =
          static_cast<double>(std::clock() - epoch_cpu_start) / CLOCKS_PER_SEC;
      const double dice = r.dice_summary.macro;
      tensorboard->add_scalars({{"eval/Dice", dice}, {"eval/mIoU", r.iou_summary.macro}}, step);
      spdlog::info(
          "epoch {}: mean train loss {:.4f} over {} clips, validation Dice {:.4f} (baseline "
          "{:.4f})",
          epoch, used ? loss_sum / used : 0.0, used, dice, result.baseline_dice);
      io::write_safetensors(run->checkpoints_dir() / "last.safetensors", model_state(*model));
      if (!std::isnan(dice) && (std::isnan(best) || dice > best)) {
        best = dice;
        result.best_epoch = epoch;
        best_row = eval_row(r);
        io::write_safetensors(run->checkpoints_dir() / "best.safetensors", model_state(*model));
      }
      model_is_best = result.best_epoch == epoch;
      state.epoch = epoch;
      state.step = step;
      state.best = best;
      state.best_epoch = result.best_epoch;
      state.model_is_best = model_is_best;
      state.best_row = best_row;
      state.epoch_train_seconds = result.epoch_train_seconds;
      state.epoch_val_seconds = result.epoch_val_seconds;
      state.epoch_cpu_seconds = result.epoch_cpu_seconds;
      state.seconds =
          previous_seconds + std::chrono::duration<double>(Clock::now() - start).count();
      state.peak_gpu_mb = run_peak_gpu_mb;
      save_sam2_state(*model, optimizer.get(), scaler_ptr, state, state_path);
    }
    if (session.stop_after > 0 && epoch >= session.stop_after && epoch < config.train.max_epochs) {
      // As an interruption would: every rank stops after the same epoch.
      spdlog::info("stopped after epoch {} of {}; continue with --resume {}", epoch,
                   config.train.max_epochs, result.run_dir);
      result.steps = step;
      result.seconds =
          previous_seconds + std::chrono::duration<double>(Clock::now() - start).count();
      if (run) stop_log_file();
      return result;
    }
  }
  result.steps = step;
  result.finished = true;
  if (!run) {
    result.seconds = previous_seconds + std::chrono::duration<double>(Clock::now() - start).count();
    return result;
  }
  nlohmann::json test_row;
  result.test_dice = std::numeric_limits<double>::quiet_NaN();
  if (test_data) {
    // The test split never chose anything: it scores the weights validation picked.
    if (!model_is_best) {
      io::load_state_dict(
          *model, io::read_safetensors(run->checkpoints_dir() / "best.safetensors").tensors);
    }
    model->eval();
    eval::VideoEvalOptions test_options = eval_options;
    test_options.max_frames = 0;
    const auto r = eval::evaluate_sam2_video(model, *test_data, test_options);
    eval::write_video_eval(r, test_options, run->path() / "test");
    test_row = eval_row(r, "test/");
    result.test_dice = r.dice_summary.macro;
    spdlog::info("test split ({} videos) with the epoch {} weights: Dice {:.4f}", r.videos,
                 result.best_epoch, result.test_dice);
  }
  result.best_dice = best;
  result.seconds = previous_seconds + std::chrono::duration<double>(Clock::now() - start).count();
  nlohmann::json summary = best_row;
  if (test_data) summary.update(test_row);
  summary["state"] = "finished";
  summary["best_epoch"] = result.best_epoch;
  summary["baseline/Dice"] = result.baseline_dice;
  summary["steps"] = step;
  summary["runtime"] = result.seconds;
  summary["trainable_parameters"] = applied.trainable_elements;
  summary["frozen_parameters"] = applied.frozen_elements;
  summary["trainable_parameter_names"] = applied.trainable;
  summary["peak_rss_mb"] = peak_rss_mb();
  summary["precision"] = to_string(precision);
  if (device.is_cuda()) summary["peak_gpu_mb"] = run_peak_gpu_mb;
  nlohmann::json cache_json = {{"tier", cache_tier}, {"reason", cache_reason}};
  if (feature_cache) {
    const auto st = feature_cache->stats();
    result.cache_hits = st.memory_hits + st.disk_hits;
    result.cache_misses = st.misses;
    cache_json.update({{"stage", sam2::feature_stage_name(cache_decision.stage)},
                       {"memory_hits", st.memory_hits},
                       {"disk_hits", st.disk_hits},
                       {"misses", st.misses},
                       {"stale", st.stale},
                       {"memory_evictions", st.memory_evictions},
                       {"disk_evictions", st.disk_evictions},
                       {"memory_mb", feature_cache->memory_bytes() / 1048576.0}});
    spdlog::info(
        "feature cache: {} hits ({} from disk), {} misses, {} evictions, {:.1f} MiB in memory",
        result.cache_hits, st.disk_hits, st.misses, st.memory_evictions + st.disk_evictions,
        feature_cache->memory_bytes() / 1048576.0);
  }
  summary["feature_cache"] = cache_json;
  run->write_summary(summary);
  return result;
}

}  // namespace iris
