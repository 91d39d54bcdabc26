// Episodic training of the IRIS network on 2D slices (`iris train` with model.name: iris):
// real episodes (reference and query from different slices), Dice + BCE, AdamW with warmup and
// cosine decay, gradient clipping and accumulation, validation on held-out slices, best and last
// checkpoints, one metrics.jsonl row per step.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/run_dir.h"
#include "models/iris/iris_model.h"

namespace iris {

struct IrisTrainConfig {
  RunOptions run;
  struct Model {
    std::string name = "iris";
    models::IrisOptions options{2, 1, 8, 4, 8, 4, 1, false};
  } model;
  struct Data {
    std::string atlas_dir = "/usr/share/mricron/templates";
    std::string label_map = "aal";  // training classes
    int64_t slice_size = 96;
    int64_t classes_per_episode = 3;
    int64_t min_area = 20;
    int64_t validation_every_nth_slice = 5;  // slices k % n == 0 are held out for validation
    double absent_query_probability = 0.1;
    int64_t min_slice_gap = 2;
  } data;
  struct Optim {
    std::string name = "adamw";
    double lr = 2e-3;
    double weight_decay = 1e-4;
    int64_t warmup = 30;
    std::string schedule = "cosine";
    double final_lr_ratio = 0.05;
    double grad_clip = 1.0;
    int64_t iterations = 300;
    int64_t batch = 4;  // episodes per optimiser step (gradients accumulated)
  } optim;
  struct Loss {
    double dice = 1.0;
    double bce = 1.0;
  } loss;
  struct Validation {
    int64_t every = 50;
    int64_t episodes = 24;
  } validation;
  int64_t log_every = 1;

  void visit(ConfigVisitor& v);
};

struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;
  double best_validation_dice = 0;
  int64_t best_step = 0;
  double final_train_loss = 0;
  double seconds = 0;
};

// Trains into a new run folder (run.root/run.name) and writes config, metrics, summary,
// checkpoints/best.pt and checkpoints/last.pt.
TrainResult train_iris(const IrisTrainConfig& config);

// Loads model weights written by train_iris (checkpoints/best.pt or last.pt) into a new model with
// `options`. Throws InputError naming the file when it cannot be read or does not fit.
models::IrisModel load_iris_checkpoint(const std::string& path, const models::IrisOptions& options);

}  // namespace iris
