#include "cli/cmd_train.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <iostream>

#include "core/build_info.h"
#include "core/error.h"
#if IRIS_HAVE_NIFTI
#include "train/iris_trainer.h"
#endif

namespace iris::cli {

std::function<int()> setup_train(CLI::App& app, const GlobalOptions& globals) {
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
    bool print_config = false;
  };
  auto options = std::make_shared<Options>();
  app.add_option("CONFIG", options->config, "YAML config (e.g. configs/iris/atlas_2d_tiny.yaml)");
  app.add_option("--set", options->overrides, "override a key: --set optim.lr=1e-3 (repeatable)");
  app.add_flag("--print-config", options->print_config, "print the resolved config and exit");
  return [options, &globals]() -> int {
#if IRIS_HAVE_NIFTI
    auto overrides = options->overrides;
    if (globals.seed) overrides.push_back(fmt::format("run.seed={}", *globals.seed));
    if (globals.device != "auto") overrides.push_back("run.device=" + globals.device);
    if (globals.threads > 0) overrides.push_back(fmt::format("run.threads={}", globals.threads));
    const auto config = load_config<IrisTrainConfig>({options->config, overrides});
    if (options->print_config) {
      std::cout << dump_config(config);
      return 0;
    }
    const TrainResult r = train_iris(config);
    std::cout << fmt::format("trained {} steps in {:.1f} s; best validation Dice {:.4f} at step {}\n"
                             "run folder: {}\n",
                             r.steps, r.seconds, r.best_validation_dice, r.best_step, r.run_dir);
    return 0;
#else
    throw NotAvailableError("training needs NIfTI support, which is off in this build (IRIS_WITH_NIFTI)");
#endif
  };
}

}  // namespace iris::cli
