// What `iris train --resume` needs in both trainers: the session, the config check, the metrics
// rows of the steps that run again, and the CPU generator's state.
#pragma once

#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "core/run_dir.h"

namespace torch::serialize {
class InputArchive;
class OutputArchive;
}  // namespace torch::serialize
namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace iris {

namespace dist {
class DistContext;
}
class LossScaler;

// How one call of a trainer runs: a new run or the continuation of a stopped one.
struct TrainSession {
  // Run folder to continue from its saved state; empty: a new run folder.
  std::string resume;
  // Stop with a saved state after this step (IRIS) or epoch (SAM2), as an interruption would
  // (0: run to the end).
  int64_t stop_after = 0;
  // Data-parallel group (null: one process). The global batch is split across its ranks; only
  // rank 0 writes into the run folder (the others return a result without run_dir).
  dist::DistContext* dist = nullptr;
};

// Keeps the metrics rows up to `step`: rows of steps after the saved state run again.
void truncate_metrics(const RunDir& run, int64_t step);

// The lines of two dumped configs that differ, "run: '...'  given: '...'" each.
std::string config_differences(const std::string& stored, const std::string& given);

// The config a resumed run continues with: the run folder's own, where only the device and the
// thread count may differ from `given`. Throws ConfigError listing any other difference.
template <class Config>
Config config_for_resume(const RunDir& run, const Config& given) {
  Config resolved = given;
  Config stored = load_config<Config>({run.config_path().string(), {}});
  resolved.run.name = stored.run.name;
  resolved.run.root = stored.run.root;
  stored.run.device = resolved.run.device;
  stored.run.threads = resolved.run.threads;
  const std::string diff = config_differences(dump_config(stored), dump_config(resolved));
  if (!diff.empty()) {
    throw ConfigError(file_message(run.config_path().string(),
                                   "the config differs from the run's, so the run cannot "
                                   "continue exactly:" +
                                       diff));
  }
  return resolved;
}

// The default CPU generator's state, under the key "rng/torch_cpu".
void save_cpu_generator(torch::serialize::OutputArchive& archive);
void load_cpu_generator(torch::serialize::InputArchive& archive);

// An optimiser's state under "optimizer"; nothing without an optimiser (null).
void save_optimizer(torch::serialize::OutputArchive& archive, torch::optim::Optimizer* optimizer);
void load_optimizer(torch::serialize::InputArchive& archive, torch::optim::Optimizer* optimizer);

// A fp16 run's loss scaler under "scaler/..."; nothing without a scaler (null).
void save_scaler(torch::serialize::OutputArchive& archive, const LossScaler* scaler);
void load_scaler(torch::serialize::InputArchive& archive, LossScaler* scaler);

// One saved number, flag or string.
c10::IValue read_value(torch::serialize::InputArchive& archive, const std::string& key);

}  // namespace iris
