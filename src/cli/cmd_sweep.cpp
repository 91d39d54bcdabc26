#include "cli/cmd_sweep.h"

#include <sys/stat.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/device.h"
#include "core/error.h"
#include "train/sweep.h"

namespace iris::cli {
namespace {

namespace fs = std::filesystem;

// This process's own binary, for worker processes and Slurm tasks.
std::string self_executable() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw RuntimeFailure("cannot find the iris executable (/proc/self/exe) to start workers");
  return self.string();
}

}  // namespace

std::function<int()> setup_sweep(CLI::App& app, const GlobalOptions& globals) {
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
    std::int64_t workers = 0;
    bool dry_run = false;
    std::int64_t task = -1;
    std::string slurm;
    std::string gpus;
    bool print_config = false;
  };
  auto options = std::make_shared<Options>();
  app.add_option("CONFIG", options->config, "sweep config (e.g. configs/sam2/sweep_surgical.yaml)")
      ->required();
  app.add_option("--set", options->overrides,
                 "override a key: --set base.train.lr=1e-4 (repeatable)");
  app.add_option("--workers", options->workers,
                 "runs at a time (default: sweep.workers, or one per GPU with --gpus)");
  app.add_option("--gpus", options->gpus,
                 "CUDA devices, one run at a time on each: 0,1,... or all (workers get "
                 "CUDA_VISIBLE_DEVICES and --device cuda; with --slurm, a GPU per array task)");
  app.add_flag("--dry-run", options->dry_run, "list the runs and what would run, run nothing");
  app.add_option("--task", options->task, "run only task I of the expansion (Slurm array tasks)");
  app.add_option("--slurm", options->slurm, "write a Slurm job-array script to FILE, run nothing");
  app.add_flag("--print-config", options->print_config, "print the resolved config and exit");
  return [options, &globals]() -> int {
    auto overrides = options->overrides;
    if (globals.device != "auto") overrides.push_back("base.run.device=" + globals.device);
    if (globals.threads > 0)
      overrides.push_back(fmt::format("base.run.threads={}", globals.threads));
    if (!globals.precision.empty()) overrides.push_back("base.run.precision=" + globals.precision);
    if (globals.seed) overrides.push_back(fmt::format("sweep.seeds=[{}]", *globals.seed));
    const SweepConfig config = load_sweep_config({options->config, overrides});
    if (options->print_config) {
      std::cout << dump_config(config);
      return 0;
    }
    auto print = [](const std::string& line) { std::cout << line << std::endl; };

    if (options->task >= 0) {
      const auto r = run_sweep_task(config, options->task, print);
      if (r.ran)
        std::cout << fmt::format("task {} finished in {:.1f} s\n", options->task, r.seconds);
      return 0;
    }

    if (!options->slurm.empty()) {
      // Tasks read the resolved config, so edits to CONFIG cannot renumber a queued array.
      const fs::path dir = sweep_dir(config);
      fs::create_directories(dir / "logs");  // Slurm does not create --output folders
      const fs::path resolved = dir / "sweep.yaml";
      write_file_atomic(resolved, dump_config(config));
      // Slurm hands each task its GPU; the indices only need to be well formed.
      if (!options->gpus.empty()) parse_gpu_list(options->gpus, -1);
      const std::string script =
          slurm_script(config, resolved.string(), self_executable(), !options->gpus.empty());
      write_file_atomic(options->slurm, script);
      ::chmod(options->slurm.c_str(), 0755);
      const auto runs = expand_sweep(config);
      std::cout << fmt::format(
          "wrote {}: a job array of {} tasks (one run each) reading {}\nsubmit it with: sbatch "
          "{}\n",
          options->slurm, runs.size(), resolved.string(), options->slurm);
      return 0;
    }

    SweepOptions sweep;
    sweep.workers = options->workers;
    sweep.dry_run = options->dry_run;
    sweep.progress = print;
    if (!options->gpus.empty()) {
      // A dry run plans for GPUs this machine need not have.
      sweep.gpus = parse_gpu_list(
          options->gpus, options->dry_run && options->gpus != "all" ? -1 : cuda_device_count());
    }
    const std::int64_t workers = sweep.workers > 0 ? sweep.workers
                                 : !sweep.gpus.empty()
                                     ? static_cast<std::int64_t>(sweep.gpus.size())
                                     : config.sweep.workers;
    if (workers < 1) throw UsageError("--workers must be >= 1");
    if (workers > 1 || !sweep.gpus.empty()) sweep.executable = self_executable();
    const auto r = run_sweep(config, sweep);
    if (options->dry_run) return 0;
    std::cout << fmt::format(
        "sweep {}: {} runs, {} finished before, {} ran ({} started again, {} resumed), {} failed "
        "in {:.1f} s\nruns: {}\nreport: iris report insights --runs {} --out {}/insights\n",
        config.sweep.name, r.total, r.skipped, r.ran, r.restarted, r.resumed, r.failed, r.seconds,
        r.sweep_dir, r.sweep_dir, r.sweep_dir);
    std::cout.flush();  // the summary before the error main() prints
    if (r.failed > 0) {
      std::string message = fmt::format("{} of {} runs failed:", r.failed, r.total);
      for (const auto& f : r.failed_runs) message += "\n  " + f;
      throw RuntimeFailure(message + "\nrun the sweep again to retry them");
    }
    return 0;
  };
}

}  // namespace iris::cli
