// The main job: IRIS trained in 2D-slice mode on the real MRI atlas (ch2bet with AAL regions as
// training classes), then evaluated one-shot and as a context ensemble on structures it never
// trained on (Brodmann areas, HarvardOxford cortex, JHU white matter), against the copied-reference
// and untrained-network baselines. Then the reduced surgical fine-tuning study
// (train/demo_study.h): a small SAM2 pretrained on synthetic domain A, its baseline and recipes x
// prompt types on domain B, and the insights report.
#include "cli/cmd_demo.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "train/demo_study.h"
#if IRIS_HAVE_NIFTI
#include "data/synthetic_subjects.h"
#include "eval/iris_unseen_eval.h"
#include "report/training_report.h"
#include "train/iris_trainer.h"
#endif

namespace iris::cli {
namespace {

// Checked before any part runs, so a long IRIS part is not wasted on a refused study.
void check_no_study(const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(out) / "study";
  if (fs::exists(dir / "model" / "pretrained.safetensors") || fs::exists(dir / "insights")) {
    throw InputError(file_message(
        dir.string(), "a demo study exists already; choose another --out or remove it"));
  }
}

// demo 3/3, under OUT/study (runs), OUT/study/insights (report) and OUT/study/study.md (table).
int run_surgical_study(const std::string& out, const GlobalOptions& globals) {
  const std::filesystem::path dir = std::filesystem::path(out) / "study";
  DemoStudyOptions options;
  options.seed = globals.seed.value_or(0);
  options.device = globals.device;
  // The study's tensors are tiny: a second thread buys little and costs run-to-run determinism.
  options.threads = globals.threads > 0 ? globals.threads : 1;
  spdlog::info(
      "demo 3/3: surgical study: a small SAM2 pretrained on synthetic domain A, then its baseline "
      "and {} recipes x {} prompt types fine-tuned on domain B",
      options.recipes.size(), options.prompt_types.size());
  const DemoStudyResult result = run_demo_study(dir.string(), options);
  std::cout << "\n" << demo_study_markdown(result);
  return 0;
}

}  // namespace

// The demo's training (configs/iris/subjects_2d_tiny.yaml says the same).
constexpr int64_t kDemoIterations = 1000;
constexpr int64_t kDemoSubjects = 40;
constexpr int64_t kDemoBaseChannels = 8;
// Evaluation: the real atlas in kEvalPoses poses; subject indices of the references and queries.
constexpr int64_t kEvalPoses = 3;
constexpr uint64_t kEvalReferenceIndex = 500000;
constexpr uint64_t kEvalQueryIndex = 600000;

std::function<int()> setup_demo(CLI::App& app, const GlobalOptions& globals) {
  struct Options {
    std::string out = "demo-out";
    bool full = false;
    int64_t iterations = 0;
    bool skip_study = false, only_study = false;
    std::vector<std::string> overrides;  // IRIS training config keys
  };
  auto options = std::make_shared<Options>();
  app.add_option("--out", options->out, "output folder (OUT/iris, OUT/study)")
      ->capture_default_str();
  app.add_flag("--full", options->full, "train longer (a few times the default)");
  app.add_option("--iterations", options->iterations, "training steps (overrides the preset)");
  app.add_option(
      "--set", options->overrides,
      "override a key of the IRIS training config: --set model.prior_features=2048 (repeatable)");
  auto* skip = app.add_flag("--skip-study", options->skip_study,
                            "run the IRIS part only (no surgical SAM2 study)");
  app.add_flag("--only-study", options->only_study, "run the surgical SAM2 study only (OUT/study)")
      ->excludes(skip);
  return [options, &globals]() -> int {
    if (!options->skip_study) check_no_study(options->out);
    if (options->only_study) return run_surgical_study(options->out, globals);
#if IRIS_HAVE_NIFTI
    namespace fs = std::filesystem;
    const fs::path out = options->out;
    if (fs::exists(out / "iris" / "config.yaml")) {
      throw InputError(file_message(
          (out / "iris").string(), "a demo run exists already; choose another --out or remove it"));
    }
    IrisTrainConfig config;
    config.run.root = out.string();
    config.run.name = "iris";
    config.run.seed = globals.seed.value_or(0);
    config.run.device = globals.device;
    config.run.threads = globals.threads;
    config.optim.iterations = options->iterations > 0 ? options->iterations
                              : options->full         ? 4 * kDemoIterations
                                                      : kDemoIterations;
    config.validation.every = std::max<int64_t>(1, config.optim.iterations / 6);
    // As configs/iris/subjects_2d_tiny.yaml: cross-subject episodes of subjects generated from
    // the atlas (pose, deformation, contrast), the prior in each slice's foreground frame along
    // its principal axes, random ellipsoid classes beside AAL's, and every 6th AAL class held out
    // to pick the checkpoint (docs/iris-training.md has the runs behind these choices).
    config.data.source = "subjects";
    config.data.subjects = kDemoSubjects;
    config.model.options.base_channels = kDemoBaseChannels;
    config.model.options.prior_frame = true;
    config.model.options.prior_frame_init = 1.0;
    config.model.options.prior_frame_axes = true;
    config.data.random_classes = 0.8;
    config.data.validation_every_nth_class = 6;
    if (!options->overrides.empty()) {
      load_config_into({"", options->overrides}, [&config](ConfigVisitor& v) { config.visit(v); });
    }
    spdlog::info(
        "demo 1/3: training IRIS on {} classes of {} subjects generated from the Colin27 atlas "
        "({} steps)",
        config.data.label_map, config.data.subjects, config.optim.iterations);
    const TrainResult trained = train_iris(config);
    const auto report_files = report::write_training_report(trained.run_dir);
    spdlog::info("training report: {}", report_files.markdown.string());

    spdlog::info("demo 2/3: one-shot and context-ensemble segmentation of unseen structures");
    const MricronAtlas atlas = load_mricron_atlas(
        config.data.atlas_dir, {"brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"});
    models::IrisModel best =
        load_iris_checkpoint(trained.run_dir + "/checkpoints/best.pt", config.model.options);
    torch::manual_seed(static_cast<uint64_t>(config.run.seed));
    models::IrisModel untrained(config.model.options);  // same initialisation as the trained run
    UnseenEvalOptions eval_options;
    eval_options.slice_size = config.data.slice_size;
    eval_options.min_area = config.data.min_area;
    const std::vector<std::string> unseen{"brodmann", "HarvardOxford-cort", "JHU-WhiteMatter"};
    std::vector<StructureResult> results;
    if (config.data.source == "subjects") {
      // The real Colin27 in a pose no training subject had, references from subjects generated
      // past the training and validation ones.
      SubjectOptions subject_options;
      subject_options.spacing_mm = config.data.subject_spacing;
      // Evaluation subjects come from seeds far from the training ones (data.subject_seed's
      // block holds the training and validation subjects from index 0).
      const uint64_t base = static_cast<uint64_t>(config.data.subject_seed) * 1000003ULL;
      const uint64_t first_reference = base + kEvalReferenceIndex;
      const uint64_t first_query = base + kEvalQueryIndex;
      std::vector<Subject> queries, references;
      for (int64_t p = 0; p < kEvalPoses; ++p) {
        queries.push_back(pose_atlas(atlas, subject_options, first_query + p));
      }
      for (int64_t r = 0; r < eval_options.ensemble_references; ++r) {
        references.push_back(
            make_subject(atlas, subject_options, first_reference + static_cast<uint64_t>(r)));
      }
      eval_options.cross_subject = true;
      eval_options.query_description = fmt::format(
          "the real Colin27 T1 and label maps in {} rigid poses no training subject had (seeds {} "
          "to {}: {} degrees about S, {} about R and A, a {} mm shift, each in a random direction; "
          "no deformation, real intensities)",
          kEvalPoses, first_query, first_query + kEvalPoses - 1, subject_options.rotation_degrees,
          subject_options.tilt_degrees, subject_options.shift_mm);
      eval_options.reference_description = fmt::format(
          "{} subjects generated from the atlas (seeds {} to {}), never trained on",
          eval_options.ensemble_references, first_reference,
          first_reference + static_cast<uint64_t>(eval_options.ensemble_references) - 1);
      results = evaluate_unseen_cross_subject(best, untrained, atlas, queries, references, unseen,
                                              eval_options);
    } else {
      results = evaluate_unseen_structures(best, untrained, atlas, unseen, eval_options);
    }
    const std::string markdown = unseen_results_markdown(results, eval_options);
    write_file_atomic(fs::path(trained.run_dir) / "eval.json",
                      unseen_results_json(results, eval_options).dump(2) + "\n");
    write_file_atomic(fs::path(trained.run_dir) / "eval.md", markdown);
    std::cout << markdown << fmt::format("\nrun folder: {}\n", trained.run_dir);
    return options->skip_study ? 0 : run_surgical_study(options->out, globals);
#else
    throw NotAvailableError(
        "the demo needs NIfTI support, which is off in this build (IRIS_WITH_NIFTI)");
#endif
  };
}

}  // namespace iris::cli
