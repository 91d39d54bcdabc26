#include "cli/cmd_eval.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>

#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/config.h"
#include "core/device.h"
#include "core/error.h"
#include "core/precision.h"
#include "data/video_dataset.h"
#include "eval/video_eval.h"
#include "models/sam2/sam2_loader.h"
#if IRIS_HAVE_NIFTI
#include <nlohmann/json.hpp>

#include "eval/iris_predict.h"
#include "cli/cmd_predict.h"
#include "data/dataset_episodes.h"
#include "train/iris_trainer.h"
#endif

namespace iris::cli {
namespace {

struct EvalSam2Options {
  std::string data;
  std::string config;
  std::string checkpoint;
  std::string out;
  std::string prompt = "point";
  uint64_t seed = 0;
  int64_t max_frames = 0;
  double nsd_tolerance = 2.0;
  bool no_postprocessing = false;
};

int run_eval_sam2(const EvalSam2Options& o, const GlobalOptions& g) {
  eval::VideoEvalOptions options;
  options.prompt = parse_prompt_type(o.prompt);
  options.seed = o.seed;
  options.max_frames = o.max_frames;
  options.nsd_tolerance = o.nsd_tolerance;
  const auto dataset = read_video_dataset(o.data);
  models::sam2::Sam2LoadOptions load;
  load.official_postprocessing = !o.no_postprocessing;
  auto model = models::sam2::load_sam2(o.config, o.checkpoint, load);
  const c10::Device device = resolve_device(g.device);
  model->to(device);
  const auto result = [&] {
    AutocastScope autocast(device, parse_precision(precision_or_default(g)));
    return eval::evaluate_sam2_video(model, dataset, options);
  }();
  eval::write_video_eval(result, options, o.out);
  auto show = [](double v) {
    return std::isnan(v) ? std::string("n/a") : fmt::format("{:.4f}", v);
  };
  std::cout << fmt::format(
      "{} videos, {} frames, {} objects, {} prompts: Dice {}, IoU {}, MAE {}, NSD {}\n",
      result.videos, result.frames, result.objects.size(), o.prompt,
      show(result.dice_summary.macro), show(result.iou_summary.macro),
      show(result.mae_summary.macro), show(result.nsd_summary.macro));
  std::cout << fmt::format("wrote {}/eval.json and eval.md\n", o.out);
  return 0;
}

struct EvalIrisOptions {
  std::string pool;
  std::string checkpoint;
  std::string config;
  std::string out;
  std::vector<std::string> strategies{"one-shot", "ensemble", "retrieval", "tuning"};
  int64_t references = 3;
  int64_t max_queries = 0;
  std::vector<int64_t> classes;
  std::vector<int64_t> window;
  int64_t tuning_steps = 20;
  double tuning_lr = 1e-3;
  int64_t top_k = 3;
  std::string modality;
  double nsd_tolerance = 2.0;
};

int run_eval_iris(const EvalIrisOptions& o, const GlobalOptions& g) {
#if IRIS_HAVE_NIFTI
  const auto config = load_config<IrisTrainConfig>({o.config, {}});
  auto model = load_iris_checkpoint(o.checkpoint, config.model.options);
  const c10::Device device = resolve_device(g.device);
  model->to(device);
  IrisEvalOptions options;
  options.strategies.clear();
  for (const auto& s : o.strategies) options.strategies.push_back(models::parse_strategy(s));
  options.references = o.references;
  options.max_queries = o.max_queries;
  options.predict.classes = o.classes;
  std::string modality = o.modality;
  if (modality.empty()) modality = dataset_json_modality(o.pool);
  use_training_preparation(options.predict, config, modality);
  options.predict.window.window = o.window;
  options.predict.tuning.steps = o.tuning_steps;
  options.predict.tuning.lr = o.tuning_lr;
  options.predict.retrieval.top_k = o.top_k;
  // The untrained baseline: the network as the run initialised it (run.seed), before any step.
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  models::IrisModel untrained(config.model.options);
  untrained->to(device);
  untrained->eval();
  options.untrained = &untrained;
  options.nsd_tolerance = o.nsd_tolerance;
  const auto result = [&] {
    AutocastScope autocast(device, parse_precision(precision_or_default(g)));
    return evaluate_iris(model, o.pool, options);
  }();
  std::filesystem::create_directories(o.out);
  write_file_atomic(std::filesystem::path(o.out) / "eval.json",
                    iris_eval_json(result, options).dump(2) + "\n");
  const std::string md = iris_eval_markdown(result, options);
  write_file_atomic(std::filesystem::path(o.out) / "eval.md", md);
  std::cout << md << fmt::format("wrote {}/eval.json and eval.md\n", o.out);
  return 0;
#else
  (void)o, (void)g;
  throw NotAvailableError(
      "IRIS evaluation needs NIfTI support, which is off in this build (IRIS_WITH_NIFTI)");
#endif
}

}  // namespace

std::function<int()> setup_eval(CLI::App& app, const GlobalOptions& globals) {
  app.require_subcommand(1);
  auto o = std::make_shared<EvalSam2Options>();
  CLI::App* s = app.add_subcommand(
      "sam2",
      "prompt each object on the first frame it appears in, track it through the video, score "
      "Dice/IoU/MAE/NSD per frame and class (docs/metrics.md)");
  s->add_option("data", o->data, "CholecSeg8k, EndoVis17/18 tree or COCO-video JSON")->required();
  s->add_option("--config", o->config, "official-format model config")->required();
  s->add_option("--checkpoint", o->checkpoint, "weights (.pt or .safetensors)")->required();
  s->add_option("--out", o->out, "folder for eval.json and eval.md")->required();
  s->add_option("--prompt", o->prompt, "point, box or mask")
      ->check(CLI::IsMember({"point", "box", "mask"}))
      ->capture_default_str();
  s->add_option("--seed", o->seed, "prompt simulation seed")->capture_default_str();
  s->add_option("--max-frames", o->max_frames, "frames per video (0: all)")->capture_default_str();
  s->add_option("--nsd-tolerance", o->nsd_tolerance, "NSD tolerance in pixels")
      ->capture_default_str();
  s->add_flag("--no-postprocessing", o->no_postprocessing, "use the config as written");

  auto io = std::make_shared<EvalIrisOptions>();
  CLI::App* i = app.add_subcommand(
      "iris",
      "every case of a pool as a query, the next cases as its references: per-class Dice of each "
      "inference strategy, eval.json and eval.md");
  i->add_option("pool", io->pool, "imagesTr/labelsTr tree, or images with a masks/ folder")
      ->required();
  i->add_option("--checkpoint", io->checkpoint, "IRIS checkpoint")->required();
  i->add_option("--config", io->config, "the run's config.yaml")->required();
  i->add_option("--out", io->out, "folder for eval.json and eval.md")->required();
  i->add_option("--strategies", io->strategies, "subset of one-shot,ensemble,retrieval,tuning")
      ->delimiter(',')
      ->check(CLI::IsMember({"one-shot", "ensemble", "retrieval", "tuning"}))
      ->capture_default_str();
  i->add_option("--references", io->references, "references per query")->capture_default_str();
  i->add_option("--max-queries", io->max_queries, "queries (0: every case)")->capture_default_str();
  i->add_option("--classes", io->classes, "label values (default: all in the pool)")
      ->delimiter(',');
  i->add_option("--window", io->window, "3D sliding window D,H,W")->delimiter(',');
  i->add_option("--tuning-steps", io->tuning_steps, "in-context tuning steps")
      ->capture_default_str();
  i->add_option("--tuning-lr", io->tuning_lr, "in-context tuning learning rate")
      ->capture_default_str();
  i->add_option("--top-k", io->top_k, "retrieval: embeddings averaged per class")
      ->capture_default_str();
  i->add_option("--nsd-tolerance", io->nsd_tolerance,
                "NSD tolerance in mm (pixels for 2D images)")
      ->capture_default_str();
  i->add_option("--modality", io->modality,
                "CT, MR, PET or other: intensity preparation (default: the pool's dataset.json, "
                "else the training data's)");
  const GlobalOptions* g = &globals;
  return [o, s, io, i, g]() -> int {
    if (s->parsed()) return run_eval_sam2(*o, *g);
    if (i->parsed()) return run_eval_iris(*io, *g);
    throw UsageError("eval: expected a model: sam2 or iris");
  };
}

}  // namespace iris::cli
