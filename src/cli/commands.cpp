// The command table: every `iris` command is registered here, in the order `--help` lists them.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/cli.h"
#include "cli/cmd_bench.h"
#include "cli/cmd_checkpoint.h"
#include "cli/cmd_data.h"
#include "cli/cmd_demo.h"
#include "cli/cmd_eval.h"
#include "cli/cmd_predict.h"
#include "cli/cmd_report.h"
#include "cli/cmd_runs.h"
#include "cli/cmd_sam2.h"
#include "cli/cmd_sweep.h"
#include "cli/cmd_train.h"
#include "core/doctor.h"
#include "core/env_info.h"
#include "core/error.h"

namespace iris::cli {
namespace {

std::function<int()> setup_version(CLI::App& app, const GlobalOptions&) {
  return [] {
    std::cout << format_env(collect_env());
    return 0;
  };
}

std::function<int()> setup_doctor(CLI::App& app, const GlobalOptions&) {
  auto options = std::make_shared<DoctorOptions>();
  auto strict = std::make_shared<bool>(false);
  app.add_option("--runs", options->runs_root, "runs folder to check for write access")
      ->capture_default_str();
  app.add_option("--atlas-dir", options->atlas_dir, "folder of the mricron-data templates")
      ->capture_default_str();
  app.add_flag("--strict", *strict, "exit non-zero on warnings too");
  return [options, strict] {
    const auto checks = run_doctor(collect_env(), *options);
    std::cout << format_checks(checks);
    bool warned = false;
    for (const auto& c : checks) warned |= c.status != CheckStatus::kOk;
    if (any_failed(checks) || (*strict && warned)) return static_cast<int>(ExitCode::kRuntime);
    return 0;
  };
}

}  // namespace

const std::vector<Command>& command_table() {
  static const std::vector<Command> table = {
      {"version", "versions, devices, BLAS and optional features of this build", setup_version},
      {"doctor", "check the environment and say what to fix", setup_doctor},
      {"data", "inspect, convert and synthesise datasets", setup_data},
      {"train", "train or fine-tune a model from a config", setup_train},
      {"eval", "evaluate a model with the documented protocol", setup_eval},
      {"predict", "segment images, videos or volumes", setup_predict},
      {"sweep", "run datasets x prompts x recipes against the baseline", setup_sweep},
      {"report", "write training and insights reports", setup_report},
      {"runs", "list, compare, export and import runs", setup_runs},
      {"checkpoint", "inspect and convert checkpoints", setup_checkpoint},
      {"sam2", "SAM2 tools: verify parity with the official implementation", setup_sam2},
      {"bench", "benchmark models, training and data loading", setup_bench},
      {"demo", "run the main job end to end", setup_demo},
  };
  return table;
}

}  // namespace iris::cli
