#include "train/iris_trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <random>

#include "core/atomic_file.h"
#include "core/device.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/progress.h"
#include "core/resources.h"
#include "data/atlas.h"
#include "data/episodes.h"
#include "models/iris/iris_model.h"
#include "track/tensorboard.h"
#include "train/losses.h"
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

Batch to_batch(const Episode& e, const c10::Device& device) {
  return {e.ref_image.unsqueeze(0).to(device), e.ref_masks.unsqueeze(0).to(device),
          e.query_image.unsqueeze(0).to(device), e.query_masks.unsqueeze(0).to(device)};
}

void save_checkpoint(const models::IrisModel& model, torch::optim::Optimizer& optimizer,
                     const fs::path& path, int64_t step) {
  torch::serialize::OutputArchive archive;
  model->save(archive);
  torch::serialize::OutputArchive optim_archive;
  optimizer.save(optim_archive);
  archive.write("optimizer", optim_archive);
  archive.write("step", torch::tensor(step));
  const fs::path temp = fs::path(path).concat(".tmp");
  archive.save_to(temp.string());
  fs::rename(temp, path);
}

}  // namespace

models::IrisModel load_iris_checkpoint(const std::string& path, const models::IrisOptions& options) {
  if (!fs::exists(path)) throw InputError(file_message(path, "no such checkpoint"));
  models::IrisModel model(options);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    model->load(archive);
  } catch (const c10::Error& e) {
    throw InputError(file_message(path, std::string("does not hold IRIS weights for this configuration: ") +
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
  });
  v.section("data", [&](ConfigVisitor& d) {
    d.field("atlas_dir", data.atlas_dir, "mricron templates folder");
    d.choice("label_map", data.label_map, {"aal", "brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"},
             "label map whose classes train the model");
    d.field("slice_size", data.slice_size, "axial slices are padded square and resized to this");
    d.field("classes_per_episode", data.classes_per_episode, "classes per episode (K)");
    d.field("min_area", data.min_area, "pixels for a class to count as present on a slice");
    d.field("validation_every_nth_slice", data.validation_every_nth_slice,
            "slices k with k % n == 0 are held out for validation");
    d.field("absent_query_probability", data.absent_query_probability,
            "chance that a query slice may lack the episode's anchor class");
    d.field("min_slice_gap", data.min_slice_gap, "reference and query slices at least this far apart");
  });
  v.section("optim", [&](ConfigVisitor& o) {
    o.choice("name", optim.name, {"adamw"}, "optimiser");
    o.field("lr", optim.lr, "peak learning rate");
    o.field("weight_decay", optim.weight_decay, "decoupled weight decay");
    o.field("warmup", optim.warmup, "linear warmup steps");
    o.choice("schedule", optim.schedule, {"cosine", "exponential", "constant"}, "decay after warmup");
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
}

TrainResult train_iris(const IrisTrainConfig& config) {
  const auto start = Clock::now();
  const auto& o = config.model.options;
  if (o.spatial_dims != 2) {
    throw NotAvailableError("model.spatial_dims: 3 is not trainable from `iris train` yet (2D slices only)");
  }
  if (config.data.slice_size % (int64_t{1} << o.stages) != 0) {
    throw ConfigError(fmt::format("data.slice_size {} must be divisible by 2^model.stages = {}",
                                  config.data.slice_size, int64_t{1} << o.stages));
  }
  if (config.optim.iterations < 1 || config.optim.batch < 1) {
    throw ConfigError("optim.iterations and optim.batch must be at least 1");
  }
  const std::string name = config.run.name.empty() ? generated_run_name("iris") : config.run.name;
  const RunDir run = RunDir::open(config.run.root, name, RunDir::Mode::kCreate);
  IrisTrainConfig resolved = config;
  resolved.run.name = name;
  run.write_config(dump_config(resolved));
  log_to_file(run.log_path());
  const c10::Device device = resolve_device(config.run.device);
  set_threads(config.run.threads);
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  std::mt19937_64 rng(static_cast<uint64_t>(config.run.seed));

  // Data: axial slices of ch2bet with the training label map, split by slice index.
  const MricronAtlas atlas = load_mricron_atlas(config.data.atlas_dir, {config.data.label_map});
  const AtlasLabelMap& labels = atlas.label_map(config.data.label_map);
  std::vector<int64_t> train_slices, val_slices;
  for (int64_t k : nonempty_slices(atlas.image.data)) {
    (k % config.data.validation_every_nth_slice == 0 ? val_slices : train_slices).push_back(k);
  }
  const SliceDataset train_data(atlas.image, labels.labels, train_slices, config.data.slice_size,
                                config.data.min_area);
  const SliceDataset val_data(atlas.image, labels.labels, val_slices, config.data.slice_size,
                              config.data.min_area);
  const std::vector<int64_t> classes = train_data.episode_classes();
  SliceEpisodeOptions episode_options{config.data.classes_per_episode, config.data.min_area,
                                      config.data.absent_query_probability, config.data.min_slice_gap};
  std::mt19937_64 val_rng(static_cast<uint64_t>(config.run.seed) + 1);
  std::vector<Episode> val_episodes;
  for (int64_t i = 0; i < config.validation.episodes; ++i) {
    val_episodes.push_back(val_data.sample(val_rng, val_data.episode_classes(), episode_options));
  }
  spdlog::info("IRIS training: {} train slices, {} validation slices, {} classes of {}; run folder {}",
               train_slices.size(), val_slices.size(), classes.size(), config.data.label_map,
               run.path().string());

  models::IrisModel model(o);
  model->to(device);
  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(config.optim.lr).weight_decay(config.optim.weight_decay));
  const LrSchedule schedule{config.optim.lr, config.optim.warmup, config.optim.iterations,
                            config.optim.schedule, config.optim.final_lr_ratio};
  auto episode_loss = [&](const Batch& b) {
    const auto out = model->forward(b.query_image, b.ref_image, b.ref_masks);
    at::Tensor loss = config.loss.dice * soft_dice_loss(out.logits, b.query_masks) +
                      config.loss.bce * bce_loss(out.logits, b.query_masks);
    for (const auto& aux : out.auxiliary) {
      const auto target = at::adaptive_avg_pool2d(b.query_masks, {aux.size(-2), aux.size(-1)}) > 0.5;
      loss = loss + 0.5 * (soft_dice_loss(aux, target) + bce_loss(aux, target));
    }
    return std::make_pair(loss, out.logits);
  };

  auto validate = [&](int64_t step) {
    torch::NoGradGuard no_grad;
    model->eval();
    double loss_sum = 0;
    std::map<int64_t, std::pair<double, int64_t>> per_class;
    for (const auto& e : val_episodes) {
      const Batch b = to_batch(e, device);
      auto [loss, logits] = episode_loss(b);
      loss_sum += loss.item<double>();
      const auto dice = hard_dice(logits, b.query_masks)[0];
      for (std::size_t k = 0; k < e.class_values.size(); ++k) {
        auto& acc = per_class[e.class_values[k]];
        acc.first += dice[static_cast<int64_t>(k)].item<double>();
        ++acc.second;
      }
    }
    model->train();
    nlohmann::json row{{"step", step}, {"val/loss", loss_sum / val_episodes.size()}};
    double dice_sum = 0;
    int64_t n = 0;
    nlohmann::json classes_json = nlohmann::json::object();
    for (const auto& [value, acc] : per_class) {
      classes_json[labels.class_name(value)] = acc.first / acc.second;
      dice_sum += acc.first;
      n += acc.second;
    }
    row["val/dice"] = n > 0 ? dice_sum / n : 0.0;
    row["val/dice_per_class"] = classes_json;
    return row;
  };

  // TensorBoard scalars beside metrics.jsonl, for TensorBoard and W&B's TensorBoard sync.
  track::TensorBoardWriter tensorboard(run.path() / "tb");

  TrainResult result;
  result.run_dir = run.path().string();
  Progress progress("train iris", config.optim.iterations, "step");
  double best = -1;
  for (int64_t step = 1; step <= config.optim.iterations; ++step) {
    const double lr = schedule.lr(step);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    optimizer.zero_grad();
    double data_ms = 0, compute_ms = 0, loss_sum = 0, dice_sum = 0;
    int64_t dice_n = 0;
    for (int64_t i = 0; i < config.optim.batch; ++i) {
      auto t0 = Clock::now();
      const Batch b = to_batch(train_data.sample(rng, classes, episode_options), device);
      data_ms += ms_since(t0);
      t0 = Clock::now();
      auto [loss, logits] = episode_loss(b);
      (loss / static_cast<double>(config.optim.batch)).backward();
      loss_sum += loss.item<double>();
      const auto dice = hard_dice(logits.detach(), b.query_masks);
      dice_sum += dice.sum().item<double>();
      dice_n += dice.numel();
      compute_ms += ms_since(t0);
    }
    const auto t0 = Clock::now();
    if (config.optim.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), config.optim.grad_clip);
    optimizer.step();
    compute_ms += ms_since(t0);
    result.final_train_loss = loss_sum / config.optim.batch;
    if (step % config.log_every == 0 || step == config.optim.iterations) {
      const double train_dice = dice_n > 0 ? dice_sum / dice_n : 0.0;
      tensorboard.add_scalars(
          {{"train/loss", result.final_train_loss}, {"train/dice", train_dice}, {"lr", lr}}, step);
      run.append_metrics({{"step", step},
                          {"train/loss", result.final_train_loss},
                          {"train/dice", train_dice},
                          {"lr", lr},
                          {"time/data_ms", data_ms},
                          {"time/compute_ms", compute_ms},
                          {"samples_per_s", 1000.0 * config.optim.batch / std::max(1e-9, data_ms + compute_ms)},
                          {"memory/peak_rss_mb", peak_rss_mb()}});
    }
    const bool validate_now = (config.validation.every > 0 && step % config.validation.every == 0) ||
                              step == config.optim.iterations;
    if (validate_now) {
      const auto row = validate(step);
      run.append_metrics(row);
      const double dice = row["val/dice"].get<double>();
      tensorboard.add_scalars({{"val/loss", row["val/loss"].get<double>()}, {"val/dice", dice}},
                              step);
      if (dice > best) {
        best = dice;
        result.best_validation_dice = dice;
        result.best_step = step;
        save_checkpoint(model, optimizer, run.checkpoints_dir() / "best.pt", step);
      }
      spdlog::info("step {}: validation loss {:.4f}, Dice {:.4f} (best {:.4f} at step {})", step,
                   row["val/loss"].get<double>(), dice, best, result.best_step);
    }
    progress.advance(1, fmt::format("loss {:.4f}", result.final_train_loss));
  }
  progress.finish();
  save_checkpoint(model, optimizer, run.checkpoints_dir() / "last.pt", config.optim.iterations);
  result.steps = config.optim.iterations;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.write_summary({{"model", "iris"},
                     {"steps", result.steps},
                     {"best/val_dice", result.best_validation_dice},
                     {"best/step", result.best_step},
                     {"final/train_loss", result.final_train_loss},
                     {"time/seconds", result.seconds},
                     {"memory/peak_rss_mb", peak_rss_mb()},
                     {"parameters", [&] {
                        int64_t n = 0;
                        for (const auto& p : model->parameters()) n += p.numel();
                        return n;
                      }()}});
  stop_log_file();
  return result;
}

}  // namespace iris
