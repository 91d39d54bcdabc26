// Episodic training of the IRIS network (`iris train` with model.name: iris): 2D slice episodes
// of the atlas (reference and query from different slices) or 3D patch episodes of synthetic
// volumes (reference and query from different cases), Dice + BCE, AdamW or Lamb with warmup and
// cosine or exponential decay, gradient clipping and accumulation, validation on held-out slices
// or volumes, best and last checkpoints (model, optimiser, schedule position, RNG states, memory
// bank) that resume exactly, one metrics.jsonl row per step.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/run_dir.h"
#include "data/dataset_episodes.h"
#include "models/iris/iris_model.h"
#include "train/resume.h"

namespace iris {

namespace dist {
class DistContext;
}

struct IrisTrainConfig {
  RunOptions run;
  struct Model {
    std::string name = "iris";
    models::IrisOptions options{2, 1, 8, 3, 8, 4, 1, false, true, true, 1024, 8.0, false};
  } model;
  struct Data {
    // atlas: 2D slices of the Colin27 atlas (spatial_dims 2). synthetic: 3D patches of organ-like
    // volumes generated at run start (spatial_dims 3); see the patch_3d presets for why.
    // datasets: the users' own data, `datasets` below (MSD/nnU-Net trees in 3D, image folders
    // in 2D), prepared through `preprocess`.
    std::string source = "atlas";
    // subjects: 2D slices of subjects generated from the atlas (a random smooth deformation, pose
    // and contrast each; data/synthetic_subjects.h); reference and query from different subjects.
    std::vector<DatasetSpec> datasets;
    int64_t subjects = 16;            // subjects: training subjects
    int64_t validation_subjects = 2;  // subjects: held-out subjects for validation
    int64_t subject_seed = 0;         // subjects: they depend on this, not on run.seed
    double subject_spacing = 2.0;     // subjects: mm per voxel of the generated volumes
    int64_t level_gap = 3;            // subjects: query slice within this many slices of the ref's
    PreprocessOptions preprocess;
    double validation_fraction = 0.2;     // datasets: held-out cases per dataset (at least 2)
    double foreground_probability = 0.9;  // datasets: query patch centred on the anchor class
    double class_drop_probability = 0.15;  // datasets: chance each non-anchor class is dropped
    double rotation_degrees = 15;          // datasets: augmentation, in the H-W plane
    double scaling = 0.1;                  // datasets: augmentation, zoom in [1 - s, 1 + s]
    std::string atlas_dir = "/usr/share/mricron/templates";
    std::string label_map = "aal";  // training classes
    int64_t slice_size = 64;
    int64_t classes_per_episode = 3;
    int64_t min_area = 20;
    int64_t validation_every_nth_slice = 5;  // slices k % n == 0 are held out for validation
    // Classes at positions i % n == 0 of the sorted class list never train and are the ones
    // validated (0: validate the training classes): the best checkpoint is then the one that
    // segments classes it never saw, as the model will be used.
    int64_t validation_every_nth_class = 0;
    double composite_classes = 0;  // chance of a composite class; see SliceEpisodeOptions
    double random_classes = 0;     // chance of a random ellipsoid class; see SliceEpisodeOptions
    double absent_query_probability = 0.1;
    int64_t min_slice_gap = 2;
    int64_t joint_shift = 8;  // pixels; see SliceEpisodeOptions
    bool joint_flip = true;
    // 3D patch mode (data.source: synthetic).
    int64_t volumes = 8;             // training volumes
    int64_t validation_volumes = 2;  // held-out volumes (at least 2: reference and query cases)
    int64_t volume_size = 64;        // voxels per side
    int64_t volume_classes = 5;      // organ labels per volume
    int64_t volume_seed = 0;         // the volumes depend on this, not on run.seed
    std::vector<int64_t> patch_size{32, 32, 32};  // [D, H, W]
    bool patch_augment = true;                    // flips, intensity and noise, drawn per patch
  } data;
  struct Optim {
    std::string name = "adamw";
    double lr = 2e-3;
    double weight_decay = 1e-4;
    double eps = 1e-8;
    double max_trust_ratio = 10;  // Lamb: trust ratio cap (0: none)
    double max_weight_norm = 0;   // Lamb: clamp of ||w|| in the trust ratio (0: none)
    int64_t warmup = 30;
    std::string schedule = "cosine";
    double final_lr_ratio = 0.05;
    double grad_clip = 1.0;
    int64_t iterations = 300;
    int64_t batch = 4;  // episodes per optimiser step over all ranks (gradients accumulated)
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
  int64_t checkpoint_every = 50;  // steps between checkpoints/last.pt (0: only at the end)

  void visit(ConfigVisitor& v);
};

struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;              // last step done (== optim.iterations when finished)
  int64_t resumed_from = 0;       // step of the checkpoint this session started from (0: new run)
  bool finished = false;          // all optim.iterations done; summary.json written
  bool already_finished = false;  // resume found nothing left to do
  double best_validation_dice = 0;
  int64_t best_step = 0;
  double final_train_loss = 0;
  double seconds = 0;
};

// Throws ConfigError naming the key when train_iris would refuse `config`: data source versus
// model.spatial_dims, slice or patch sizes not divisible by 2^model.stages, too few volumes.
void check_iris_train_config(const IrisTrainConfig& config);

// Trains into a new run folder (run.root/run.name) and writes config, metrics, summary,
// checkpoints/best.pt and checkpoints/last.pt. With session.resume, continues that run folder from
// checkpoints/last.pt: metrics rows after the checkpoint's step are dropped and the steps are run
// again, giving the values of an uninterrupted run on CPU. The config must equal the run's
// config.yaml except run.device and run.threads (ConfigError naming the differing keys otherwise).
TrainResult train_iris(const IrisTrainConfig& config, const TrainSession& session = {});

// Loads model weights written by train_iris (checkpoints/best.pt or last.pt) into a new model with
// `options`. Throws InputError naming the file when it cannot be read or does not fit.
models::IrisModel load_iris_checkpoint(const std::string& path, const models::IrisOptions& options);

}  // namespace iris
