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
  // Everything a run shares. The keys the sweep fills in per run (run.name, run.root, run.seed,
  // recipe, baseline, model.prompt_type, model.trainable_modules, data.name, data.train,
  // data.val, data.test, data.clip_length, data.clip_stride) are not part of `base:`.
  Sam2TrainConfig base;

  void visit(ConfigVisitor& v);
};

// Reads a sweep config: `datasets:` is a mapping of names the visitor cannot know beforehand, so
// it is bound here (plain load_config<SweepConfig> would reject every dataset name). ConfigError
// for unknown keys, wrong types and per-run keys under `base:`.
SweepConfig load_sweep_config(const ConfigSource& source);

// <root>/<name>: where the sweep's runs, logs and resolved config live.
std::string sweep_dir(const SweepConfig& config);

// One expanded run: `<dataset>_<prompt>_<recipe>__<id>` (+ `_s<seed>` when the sweep has several
// seeds); baselines carry recipe "none" and are marked as baselines in their config.
struct SweepRun {
  std::string name;
  bool baseline = false;
  Sam2TrainConfig config;
  std::string dataset, prompt_type, recipe;  // recipe as in the name ("none" for baselines)
  int64_t seed = 0;
  std::string id;  // sweep_run_id(config)
};

// 8 hex digits of a hash of everything in the run's config that can change its result (every
// field but run.name, run.root, run.device, run.threads and the derived trainable_modules).
std::string sweep_run_id(const Sam2TrainConfig& config);

// Deterministic expansion (same config -> same names, same order; baselines first). Throws
// ConfigError for a dataset missing from `datasets:`, unknown prompt types or recipes, repeats.
std::vector<SweepRun> expand_sweep(const SweepConfig& config);

enum class SweepRunState { kPending, kInterrupted, kFinished, kFailed };
// State of a run folder: finished when its summary is complete; interrupted when it exists but is
// not finished.
SweepRunState sweep_run_state(const std::string& run_dir);
const char* sweep_run_state_name(SweepRunState state);  // pending, interrupted, finished, failed

// `--gpus 0,2,3` or `--gpus all`: the CUDA devices local workers run on, in the order given.
// `available` is the number of CUDA devices of this machine, or -1 when unknown (a Slurm script:
// the indices are not checked and "all" stands for one GPU per task). Throws UsageError naming
// --gpus for a malformed or repeated index, one not below `available`, or no device at all.
std::vector<int> parse_gpu_list(const std::string& text, int available);

// One local worker process: what follows the executable on its command line and what is added
// to its environment ("NAME=value").
struct WorkerLaunch {
  std::vector<std::string> args;
  std::vector<std::string> env;
  int gpu = -1;  // the CUDA device it runs on; -1: none
};

// The worker in slot `slot` (0 .. workers - 1) running task `index` of `config_path`: slot k
// runs on gpus[k % gpus.size()], given to it as CUDA_VISIBLE_DEVICES=<gpu> and `--device cuda`,
// so the run sees its GPU as cuda:0 and nothing else. Without GPUs: no device arguments.
WorkerLaunch worker_launch(const std::string& config_path, int64_t index, int64_t slot,
                           const std::vector<int>& gpus,
                           const std::vector<std::string>& extra_args = {});

// The GPU of each of `runs` runs started in order by `workers` workers (round-robin over the
// slots, slot k on gpus[k % gpus.size()]): the dry run's plan. At run time a run takes the slot,
// and so the GPU, of the worker that finished first; with equal run times this is the same.
std::vector<int> plan_gpus(int64_t runs, int64_t workers, const std::vector<int>& gpus);

struct SweepOptions {
  int64_t workers = 0;     // 0: config's sweep.workers, or one per GPU with `gpus`
  std::vector<int> gpus;   // CUDA devices for worker processes (empty: run.device as configured)
  std::string executable;  // the `iris` binary for worker processes; empty: run in-process
  bool dry_run = false;    // print the plan only
  std::function<void(const std::string& line)> progress;  // "done/left, ETA" lines
};

struct SweepResult {
  int64_t total = 0, skipped = 0, ran = 0, failed = 0;
  int64_t restarted = 0;  // interrupted or failed before, started again from scratch
  int64_t resumed = 0;    // interrupted after an epoch, continued from its saved state
  std::string sweep_dir;
  std::vector<std::string> failed_runs;  // "<name>: <why> (log: <path>)"
  double seconds = 0.0;
};

// Runs every run not finished yet; writes <sweep_dir>/sweep.yaml (the resolved config that worker
// processes and Slurm tasks read). One sweep at a time per folder (a lock file). Failed runs are
// counted and listed, never thrown; configuration problems throw before anything runs.
SweepResult run_sweep(const SweepConfig& config, const SweepOptions& options);

// Task `index` of the expansion, in this process (`iris sweep CONFIG --task i`): skipped when
// finished, otherwise (re)run from scratch. A failure is recorded in the run folder and rethrown.
SweepResult run_sweep_task(const SweepConfig& config, int64_t index,
                           const std::function<void(const std::string&)>& progress = {});

// A Slurm job-array script that runs task i of the expanded sweep with `iris sweep CONFIG --task i`
// (one array task per run, a GPU per task when base.run.device is cuda). `config_path` should be
// the resolved <sweep_dir>/sweep.yaml, so that editing the original file cannot renumber the
// tasks of a queued array. Paths in the config are resolved from the current directory, which
// the script changes to. With `gpu_per_task` (`--gpus` given): every array task asks for one
// task with one GPU (`--ntasks=1`, `--gpus-per-task=1`) and runs with `--device cuda`, the GPU
// Slurm gave it.
std::string slurm_script(const SweepConfig& config, const std::string& config_path,
                         const std::string& executable, bool gpu_per_task = false);

}  // namespace iris
