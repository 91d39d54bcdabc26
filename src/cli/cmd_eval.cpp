#include "cli/cmd_eval.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>

#include "cli/cli.h"
#include "core/device.h"
#include "core/error.h"
#include "data/video_dataset.h"
#include "eval/video_eval.h"
#include "models/sam2/sam2_loader.h"

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
  model->to(resolve_device(g.device));
  const auto result = eval::evaluate_sam2_video(model, dataset, options);
  eval::write_video_eval(result, options, o.out);
  auto show = [](double v) { return std::isnan(v) ? std::string("n/a") : fmt::format("{:.4f}", v); };
  std::cout << fmt::format("{} videos, {} frames, {} objects, {} prompts: Dice {}, IoU {}, MAE {}, NSD {}\n",
                           result.videos, result.frames, result.objects.size(), o.prompt,
                           show(result.dice_summary.macro), show(result.iou_summary.macro),
                           show(result.mae_summary.macro), show(result.nsd_summary.macro));
  std::cout << fmt::format("wrote {}/eval.json and eval.md\n", o.out);
  return 0;
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
  s->add_option("--nsd-tolerance", o->nsd_tolerance, "NSD tolerance in pixels")->capture_default_str();
  s->add_flag("--no-postprocessing", o->no_postprocessing, "use the config as written");
  const GlobalOptions* g = &globals;
  return [o, s, g]() -> int {
    if (s->parsed()) return run_eval_sam2(*o, *g);
    throw UsageError("eval: expected a model: sam2");
  };
}

}  // namespace iris::cli
