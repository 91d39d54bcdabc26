// Sweeps: datasets × prompt types × recipes × seeds of SAM2 fine-tuning runs, plus one untrained
// baseline per (dataset, prompt type), run by N local workers or written as a Slurm job array.
// Finished runs are skipped and interrupted ones start again, so a killed sweep resumes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "train/sam2_trainer.h"

namespace iris {

// `iris sweep CONFIG`. Every run starts from `base` (a Sam2TrainConfig: model, train, loss) with
// its dataset, prompt type, recipe and seed filled in.
struct SweepConfig {
  struct Sweep {
    std::string name = "sweep";  // runs go to <root>/<name>/<run name>
    std::string root = "runs";
    std::vector<std::string> datasets;      // keys of `datasets` below, in this order
    std::vector<std::string> prompt_types;  // point, box, mask
    std::vector<std::string> recipes;       // e.g. md, pe+md, ie+pe+md+mem
    std::vector<int64_t> seeds{0};
    bool baselines = true;  // one untrained evaluation per (dataset, prompt type)
    int64_t workers = 1;    // local runs at a time
  } sweep;
  struct Dataset {
    std::string train, val, test;  // video datasets (native layout or COCO-video JSON)
    int64_t clip_length = 4;
    int64_t clip_stride = 4;
    void visit(ConfigVisitor& v);
  };
  std::map<std::string, Dataset> datasets;
  Sam2TrainConfig base;

  void visit(ConfigVisitor& v);
};

// One expanded run: `<dataset>_<prompt>_<recipe>__<id>` (+ `_s<seed>` when the sweep has several
// seeds); baselines carry recipe "none" and are marked as baselines in their config.
struct SweepRun {
  std::string name;
  bool baseline = false;
  Sam2TrainConfig config;
};

// Deterministic expansion (same config -> same names, same order; baselines first).
std::vector<SweepRun> expand_sweep(const SweepConfig& config);

enum class SweepRunState { kPending, kInterrupted, kFinished, kFailed };
// State of a run folder: finished when its summary is complete; interrupted when it exists but is
// not finished.
SweepRunState sweep_run_state(const std::string& run_dir);

struct SweepOptions {
  int64_t workers = 0;      // 0: config's sweep.workers
  std::string executable;   // the `iris` binary for worker processes; empty: run in-process
  bool dry_run = false;     // print the plan only
  std::function<void(const std::string& line)> progress;  // "done/left, ETA" lines
};

struct SweepResult {
  int64_t total = 0, skipped = 0, ran = 0, failed = 0;
  std::string sweep_dir;
  std::vector<std::string> failed_runs;
};

SweepResult run_sweep(const SweepConfig& config, const SweepOptions& options);

// A Slurm job-array script that runs task i of the expanded sweep with `iris sweep CONFIG --task i`.
std::string slurm_script(const SweepConfig& config, const std::string& config_path,
                         const std::string& executable);

}  // namespace iris
