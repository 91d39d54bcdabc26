// Fine-tuning SAM2 on video clips with a recipe (which parts train), the official loss, AdamW with
// warmup + cosine, gradient accumulation and clipping; evaluation with the documented protocol on
// a validation set before training (the baseline) and after every epoch; best and last weights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/run_dir.h"
#include "train/resume.h"

namespace iris::models::sam2 {
class Sam2Model;
}
namespace iris::dist {
class DistContext;
}

namespace iris {

struct Sam2TrainConfig {
  RunOptions run;
  std::string recipe = "md";  // SAM2 parameter groups joined by '+'; "none" = baseline only
  // The untrained reference of its (dataset, prompt type): trackers and reports read this flag,
  // not the run name. Requires train.max_epochs 0.
  bool baseline = false;
  struct Model {
    std::string config;      // official-format YAML
    std::string checkpoint;  // .pt or .safetensors
    std::string prompt_type = "point";
    std::vector<std::string> trainable_modules;  // derived from the recipe (written for trackers)
  } model;
  struct Data {
    std::string name = "dataset";
    std::string train;  // video dataset (native layout or COCO-video JSON)
    std::string val;    // best-epoch selection only
    std::string test;   // optional: the best weights are evaluated on it once, at the end
    int64_t clip_length = 4;
    int64_t clip_stride = 4;
    int64_t val_max_frames = 0;  // per video; 0 = all
  } data;
  struct Train {
    int64_t max_epochs = 1;  // 0 = evaluate the untrained model only
    double lr = 5e-5;
    double weight_decay = 0.01;
    int64_t warmup = 0;  // optimiser steps
    std::string schedule = "cosine";
    double final_lr_ratio = 0.1;
    double grad_clip = 0.1;
    int64_t grad_accum = 1;  // clips per optimiser step, over all ranks (the global batch)
    std::string feature_cache = "auto";  // auto | off | memory | disk (see feature_cache.h)
    std::string cache_dir;               // disk tier; empty: <run.root>/.feature_cache
    int64_t cache_budget_mb = 2048;      // memory tier
    int64_t cache_disk_budget_mb = 20480;
  } train;
  struct Loss {
    double mask = 20.0, dice = 1.0, iou = 1.0, cls = 1.0;
  } loss;

  void visit(ConfigVisitor& v);
};

struct Sam2TrainResult {
  std::string run_dir;
  int64_t steps = 0;
  double baseline_dice = 0.0;
  double best_dice = 0.0;
  double test_dice = 0.0;  // NaN without data.test
  int64_t best_epoch = 0;
  int64_t resumed_from_epoch = 0;  // epoch of the state this session started from (0: new run)
  bool finished = false;           // all train.max_epochs done; summary.json written (rank 0)
  bool already_finished = false;   // resume found nothing left to do
  int64_t trainable_parameters = 0;
  double seconds = 0.0;
  std::vector<double> epoch_train_seconds;  // the clip loop of each epoch
  std::vector<double> epoch_val_seconds;    // its validation pass
  std::vector<double> epoch_cpu_seconds;    // process CPU time of both (robust on a busy host)
  std::string feature_cache = "off";        // the tier used: off, memory or disk
  std::string feature_cache_reason;
  int64_t cache_hits = 0, cache_misses = 0;
};

// With `model`: trains it (in place, weights as given) instead of loading model.config and
// model.checkpoint (benchmarks and tests of randomly initialised models).
// With `dist` (a group of more than one rank): data-parallel. Rank 0's weights are broadcast,
// each optimiser step's train.grad_accum clips are split across the ranks by a
// dist::DistributedSampler, gradients are summed by dist::GradientSync, and rank 0 alone
// validates and writes the run folder (the others return a result without run_dir). A clip's
// prompts and dropout depend on (run.seed, epoch, clip) only, so any number of ranks ends with
// the weights of one process.
Sam2TrainResult train_sam2(const Sam2TrainConfig& config,
                           const models::sam2::Sam2Model* model = nullptr,
                           dist::DistContext* dist = nullptr);
// The same with a session: `session.resume` continues a run folder after the last epoch its
// checkpoints/resume.pt holds (written after every epoch, epoch 0 being the untrained
// baseline), appending to its metrics; `session.stop_after` stops after that epoch as an
// interruption would.
Sam2TrainResult train_sam2(const Sam2TrainConfig& config, const TrainSession& session,
                           const models::sam2::Sam2Model* model);

}  // namespace iris
