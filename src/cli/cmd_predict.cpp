#include "cli/cmd_predict.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/cli.h"
#include "core/device.h"
#include "core/error.h"
#include "models/sam2/sam2_loader.h"
#include "models/sam2/sam2_predict.h"

namespace iris::cli {
namespace {

namespace sam2 = models::sam2;

struct PredictSam2Options {
  std::string input;
  std::string config;
  std::string checkpoint;
  std::string out;
  std::vector<std::string> points;
  std::vector<std::string> boxes;
  std::vector<std::string> masks;
  int64_t frame = 0;
  int64_t object = 1;
  std::string prompts_json;
  bool no_reverse = false;
  bool no_overlay = false;
  bool no_postprocessing = false;
  bool offload_state = false;
};

int run_predict_sam2(const PredictSam2Options& o, const GlobalOptions& g) {
  sam2::PredictOptions options;
  options.out = o.out;
  options.reverse = !o.no_reverse;
  options.overlay = !o.no_overlay;
  options.offload_state_to_cpu = o.offload_state;
  for (const auto& p : o.points) options.prompts.push_back(sam2::parse_point_prompt(p, o.frame, o.object));
  // Points given together on one frame and object are one prompt (SAM's multi-click input).
  if (options.prompts.size() > 1) {
    auto merged = options.prompts.front();
    for (size_t i = 1; i < options.prompts.size(); ++i) {
      merged.points.insert(merged.points.end(), options.prompts[i].points.begin(),
                           options.prompts[i].points.end());
      merged.labels.insert(merged.labels.end(), options.prompts[i].labels.begin(),
                           options.prompts[i].labels.end());
    }
    options.prompts = {merged};
  }
  for (const auto& b : o.boxes) options.prompts.push_back(sam2::parse_box_prompt(b, o.frame, o.object));
  for (const auto& m : o.masks) {
    sam2::Sam2Prompt p;
    p.type = sam2::Sam2Prompt::Type::kMask;
    p.frame = o.frame;
    p.obj_id = o.object;
    p.mask_file = m;
    options.prompts.push_back(p);
  }
  if (!o.prompts_json.empty()) {
    for (auto& p : sam2::read_prompts_json(o.prompts_json)) options.prompts.push_back(std::move(p));
  }

  sam2::Sam2LoadOptions load;
  load.official_postprocessing = !o.no_postprocessing;
  auto model = sam2::load_sam2(o.config, o.checkpoint, load);
  model->to(resolve_device(g.device));
  const auto input = sam2::load_predict_input(o.input);
  spdlog::info("{}: {} frame(s) of {}x{}, {} prompt(s)", o.input, input.frames.size(),
               input.width(), input.height(), options.prompts.size());
  const auto result = sam2::predict_sam2(model, input, options);
  for (size_t k = 0; k < result.obj_ids.size(); ++k) {
    int64_t frames_with = 0;
    for (const auto& row : result.areas) frames_with += row[k] > 0 ? 1 : 0;
    std::cout << fmt::format("object {}: present in {} of {} frames\n", result.obj_ids[k],
                             frames_with, result.areas.size());
  }
  std::cout << fmt::format("median per frame: image encoder {:.1f} ms, tracking {:.1f} ms\n",
                           result.encoder_ms, result.tracking_ms);
  std::cout << fmt::format("wrote {} files under {}\n", result.written.size(), o.out);
  return 0;
}

}  // namespace

std::function<int()> setup_predict(CLI::App& app, const GlobalOptions& globals) {
  app.require_subcommand(1);
  auto o = std::make_shared<PredictSam2Options>();
  CLI::App* s = app.add_subcommand(
      "sam2",
      "segment prompted objects and track them through every frame: an image, a folder of "
      "frames, a video file or a NIfTI volume (slices as frames)");
  s->add_option("input", o->input, "image, frames folder, video file or .nii/.nii.gz")->required();
  s->add_option("--config", o->config, "official-format model config (YAML)")->required();
  s->add_option("--checkpoint", o->checkpoint, ".pt or .safetensors weights")->required();
  s->add_option("--out", o->out, "output folder: masks/, overlay, prediction.json")->required();
  s->add_option("--point", o->points, "x,y[,label] in input pixels; label 1 positive, 0 negative");
  s->add_option("--box", o->boxes, "x0,y0,x1,y1 in input pixels");
  s->add_option("--mask", o->masks, "mask PNG of the input's size, nonzero = object");
  s->add_option("--frame", o->frame, "frame (slice) the command-line prompts are on")
      ->capture_default_str();
  s->add_option("--object", o->object, "object id of the command-line prompts")
      ->capture_default_str();
  s->add_option("--prompts", o->prompts_json, "JSON list of prompts for several frames/objects");
  s->add_flag("--no-reverse", o->no_reverse,
              "do not track backwards from the first prompted frame");
  s->add_flag("--no-overlay", o->no_overlay, "write masks only");
  s->add_flag("--no-postprocessing", o->no_postprocessing,
              "use the config as written (no dynamic multimask, hole filling, binarised memory)");
  s->add_flag("--offload-state", o->offload_state, "keep memories in host memory (long videos)");
  const GlobalOptions* g = &globals;
  return [o, s, g]() -> int {
    if (s->parsed()) return run_predict_sam2(*o, *g);
    throw UsageError("predict: expected a model: sam2");
  };
}

}  // namespace iris::cli
