#include "cli/cmd_train.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <yaml-cpp/yaml.h>

#include "core/build_info.h"
#include "core/config.h"
#include "core/device.h"
#include "core/error.h"
#include "dist/launcher.h"
#include "dist/process_group.h"
#include "report/training_report.h"
#include "train/sam2_trainer.h"
#if IRIS_HAVE_NIFTI
#include "train/iris_trainer.h"
#endif

namespace iris::cli {
namespace {

// This process's part in a data-parallel run: the launcher of local ranks (`--nproc N` without a
// rank environment), a rank of a group, or a single process.
struct DistRole {
  bool launched = false;  // this process started the ranks, which did the work
  std::unique_ptr<dist::DistContext> group;
};

// The command line's distributed options.
struct DistFlags {
  int nproc = 1;
  double timeout_s = 1800;
  std::string backend = "auto";
  double bucket_mb = 25;
  bool no_overlap = false;
};

DistRole join_or_launch(const std::optional<dist::DistEnv>& env, const DistFlags& flags,
                        const std::string& device) {
  const int nproc = flags.nproc;
  DistRole role;
  const bool distributed = (env && env->world_size > 1) || nproc > 1;
  if (distributed && !dist::dist_available()) {
    dist::DistContext::create(dist::DistEnv{}, {});  // throws NotAvailableError
  }
  if (!env && nproc > 1) {
    dist::LaunchOptions launch;
    launch.nproc = nproc;
    dist::launch_local_ranks(dist::own_command_line(), launch);
    role.launched = true;  // rank 0 printed the outcome
    return role;
  }
  if (env && env->world_size > 1) {
    dist::DistOptions options;
    options.timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000));
    options.backend = flags.backend;
    options.bucket_bytes = static_cast<int64_t>(flags.bucket_mb * (1 << 20));
    options.overlap_backward = !flags.no_overlap;
    options.device = resolve_device(device);
    if (options.device.is_cuda()) {
      options.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env->local_rank));
    }
    role.group = dist::DistContext::create(*env, options);
    // Rank 0 speaks for the run; the others only report problems.
    if (!role.group->is_main()) spdlog::set_level(spdlog::level::warn);
  }
  return role;
}

}  // namespace

std::function<int()> setup_train(CLI::App& app, const GlobalOptions& globals) {
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
    bool print_config = false;
    std::string resume;
    bool no_report = false;
    DistFlags dist;
  };
  auto options = std::make_shared<Options>();
  app.add_option("CONFIG", options->config, "YAML config (e.g. configs/iris/atlas_2d_tiny.yaml)");
  app.add_option("--set", options->overrides, "override a key: --set optim.lr=1e-3 (repeatable)");
  app.add_flag("--print-config", options->print_config, "print the resolved config and exit");
  app.add_option(
      "--resume", options->resume,
      "continue this run folder from its last checkpoint (CONFIG defaults to its config.yaml)");
  app.add_flag("--no-report", options->no_report, "skip the training report at the end");
  app.add_option("--nproc", options->dist.nproc,
                 "data-parallel ranks started on this machine (a torchrun/srun environment, "
                 "RANK and WORLD_SIZE set, is joined instead)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--dist-timeout", options->dist.timeout_s,
                 "seconds a rank waits for its peers before failing")
      ->check(CLI::PositiveNumber);
  app.add_option("--dist-backend", options->dist.backend, "auto, gloo or nccl")
      ->check(CLI::IsMember({"auto", "gloo", "nccl"}));
  app.add_option("--dist-bucket-mb", options->dist.bucket_mb,
                 "size of the gradient all-reduce buckets in MB (default 25)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--dist-no-overlap", options->dist.no_overlap,
               "all-reduce the gradients after the step's last backward instead of during it");
  return [options, &globals]() -> int {
    auto overrides = options->overrides;
    if (globals.seed) overrides.push_back(fmt::format("run.seed={}", *globals.seed));
    if (globals.device != "auto") overrides.push_back("run.device=" + globals.device);
    if (globals.threads > 0) overrides.push_back(fmt::format("run.threads={}", globals.threads));
    if (!globals.precision.empty()) overrides.push_back("run.precision=" + globals.precision);
    std::string config_path = options->config;
    if (config_path.empty() && !options->resume.empty()) {
      config_path = (std::filesystem::path(options->resume) / "config.yaml").string();
    }
    if (config_path.empty()) throw UsageError("train: give a CONFIG file (or --resume RUN_DIR)");
    // SAM2 fine-tuning configs name an official model config and checkpoint.
    const YAML::Node tree = load_yaml_tree({config_path, overrides});
    // Ranks are started with this same command line and the launcher's variables set.
    const auto dist_env = dist::dist_env_from_environment();
    const bool sam2_config = tree["model"] && tree["model"]["checkpoint"];
    if (!options->resume.empty()) {
      // The run folder's own config tells which trainer wrote it.
      const auto run_config = std::filesystem::path(options->resume) / "config.yaml";
      if (!std::filesystem::is_regular_file(run_config)) {
        throw InputError(
            file_message(options->resume, "not a run folder to resume (no config.yaml)"));
      }
      const YAML::Node run_tree = load_yaml_tree({run_config.string(), {}});
      const bool sam2_run = run_tree["model"] && run_tree["model"]["checkpoint"];
      if (sam2_run != sam2_config) {
        throw ConfigError(fmt::format("{} is {} config but {} holds {} run", config_path,
                                      sam2_config ? "a SAM2" : "an IRIS", options->resume,
                                      sam2_run ? "a SAM2" : "an IRIS"));
      }
    }
    if (sam2_config) {
      const auto config = load_config<Sam2TrainConfig>({config_path, overrides});
      if (options->print_config) {
        std::cout << dump_config(config);
        return 0;
      }
      const DistRole role = join_or_launch(dist_env, options->dist, config.run.device);
      if (role.launched) return 0;
      TrainSession session;
      session.resume = options->resume;
      session.dist = role.group.get();
      const auto r = train_sam2(config, session, nullptr);
      if (role.group && !role.group->is_main()) return 0;
      if (r.already_finished) {
        std::cout << fmt::format("run {} had already finished all {} epochs; nothing to resume\n",
                                 r.run_dir, config.train.max_epochs);
        return 0;
      }
      std::cout << fmt::format(
          "SAM2 recipe {}: {} trainable parameters, {} steps{} in {:.1f} s; validation Dice {:.4f} "
          "untrained, best {:.4f} (epoch {})\nrun folder: {}\n",
          config.recipe, r.trainable_parameters, r.steps,
          r.resumed_from_epoch > 0 ? fmt::format(" (resumed after epoch {})", r.resumed_from_epoch)
                                   : "",
          r.seconds, r.baseline_dice, r.best_dice, r.best_epoch, r.run_dir);
      return 0;
    }
#if IRIS_HAVE_NIFTI
    const auto config = load_config<IrisTrainConfig>({config_path, overrides});
    if (options->print_config) {
      std::cout << dump_config(config);
      return 0;
    }
    DistRole role = join_or_launch(dist_env, options->dist, config.run.device);
    if (role.launched) return 0;
    const std::unique_ptr<dist::DistContext>& group = role.group;
    TrainSession session{options->resume, 0};
    session.dist = group.get();
    const TrainResult r = train_iris(config, session);
    if (group && !group->is_main()) return 0;
    if (r.already_finished) {
      std::cout << fmt::format("run {} had already finished all {} steps; nothing to resume\n",
                               r.run_dir, r.steps);
    } else {
      std::cout << fmt::format(
          "trained {} steps{} in {:.1f} s; best validation Dice {:.4f} at step {}\nrun folder: "
          "{}\n",
          r.steps,
          r.resumed_from > 0 ? fmt::format(" (resumed after step {})", r.resumed_from) : "",
          r.seconds, r.best_validation_dice, r.best_step, r.run_dir);
    }
    if (!options->no_report) {
      const auto files = report::write_training_report(r.run_dir);
      std::cout << fmt::format("training report: {}\n", files.markdown.string());
      if (files.plots.empty() && !files.plot_note.empty()) spdlog::info("{}", files.plot_note);
    }
    return 0;
#else
    throw NotAvailableError(
        "training needs NIfTI support, which is off in this build (IRIS_WITH_NIFTI)");
#endif
  };
}

}  // namespace iris::cli
