// The main job: IRIS trained in 2D-slice mode on the real MRI atlas (ch2bet with AAL regions as
// training classes), then evaluated one-shot and as a context ensemble on structures it never
// trained on (Brodmann areas, HarvardOxford cortex, JHU white matter), against the copied-reference
// and untrained-network baselines.
#include "cli/cmd_demo.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#if IRIS_HAVE_NIFTI
#include "eval/iris_unseen_eval.h"
#include "report/training_report.h"
#include "train/iris_trainer.h"
#endif

namespace iris::cli {

std::function<int()> setup_demo(CLI::App& app, const GlobalOptions& globals) {
  struct Options {
    std::string out = "demo-out";
    bool full = false;
    int64_t iterations = 0;
  };
  auto options = std::make_shared<Options>();
  app.add_option("--out", options->out, "output folder (runs under OUT/iris)")->capture_default_str();
  app.add_flag("--full", options->full, "train longer (a few times the default)");
  app.add_option("--iterations", options->iterations, "training steps (overrides the preset)");
  return [options, &globals]() -> int {
#if IRIS_HAVE_NIFTI
    namespace fs = std::filesystem;
    const fs::path out = options->out;
    if (fs::exists(out / "iris" / "config.yaml")) {
      throw InputError(file_message((out / "iris").string(),
                                    "a demo run exists already; choose another --out or remove it"));
    }
    IrisTrainConfig config;
    config.run.root = out.string();
    config.run.name = "iris";
    config.run.seed = globals.seed.value_or(0);
    config.run.device = globals.device;
    config.run.threads = globals.threads;
    config.optim.iterations = options->iterations > 0 ? options->iterations : (options->full ? 1200 : 240);
    config.validation.every = std::max<int64_t>(1, config.optim.iterations / 6);
    spdlog::info("demo 1/2: training IRIS on {} slices of the Colin27 atlas ({} steps)", config.data.label_map,
                 config.optim.iterations);
    const TrainResult trained = train_iris(config);
    const auto report_files = report::write_training_report(trained.run_dir);
    spdlog::info("training report: {}", report_files.markdown.string());

    spdlog::info("demo 2/2: one-shot and context-ensemble segmentation of unseen structures");
    const MricronAtlas atlas = load_mricron_atlas(config.data.atlas_dir, {"brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"});
    models::IrisModel best = load_iris_checkpoint(trained.run_dir + "/checkpoints/best.pt", config.model.options);
    torch::manual_seed(static_cast<uint64_t>(config.run.seed));
    models::IrisModel untrained(config.model.options);  // same initialisation as the trained run
    UnseenEvalOptions eval_options;
    eval_options.slice_size = config.data.slice_size;
    eval_options.min_area = config.data.min_area;
    const auto results = evaluate_unseen_structures(best, untrained, atlas,
                                                    {"brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"}, eval_options);
    const std::string markdown = unseen_results_markdown(results, eval_options);
    write_file_atomic(fs::path(trained.run_dir) / "eval.json", unseen_results_json(results, eval_options).dump(2) + "\n");
    write_file_atomic(fs::path(trained.run_dir) / "eval.md", markdown);
    std::cout << markdown << fmt::format("\nrun folder: {}\n", trained.run_dir);
    return 0;
#else
    throw NotAvailableError("the demo needs NIfTI support, which is off in this build (IRIS_WITH_NIFTI)");
#endif
  };
}

}  // namespace iris::cli
