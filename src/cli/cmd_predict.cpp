#include "cli/cmd_predict.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/cli.h"
#include "core/build_info.h"
#include "core/config.h"
#include "core/device.h"
#include "core/error.h"
#include "core/precision.h"
#include "models/sam2/sam2_loader.h"
#include "models/sam2/sam2_predict.h"
#if IRIS_HAVE_NIFTI
#include "eval/iris_predict.h"
#include "models/iris/memory_bank.h"
#include "train/iris_trainer.h"
#endif

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
  bool offload_video = false;
  bool offload_state = false;
};

int run_predict_sam2(const PredictSam2Options& o, const GlobalOptions& g) {
  sam2::PredictOptions options;
  options.out = o.out;
  options.reverse = !o.no_reverse;
  options.overlay = !o.no_overlay;
  options.offload_video_to_cpu = o.offload_video;
  options.offload_state_to_cpu = o.offload_state;
  for (const auto& p : o.points)
    options.prompts.push_back(sam2::parse_point_prompt(p, o.frame, o.object));
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
  for (const auto& b : o.boxes)
    options.prompts.push_back(sam2::parse_box_prompt(b, o.frame, o.object));
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
  const c10::Device device = resolve_device(g.device);
  model->to(device);
  const auto input = sam2::load_predict_input(o.input);
  spdlog::info("{}: {} frame(s) of {}x{}, {} prompt(s)", o.input, input.frames.size(),
               input.width(), input.height(), options.prompts.size());
  const auto result = [&] {
    AutocastScope autocast(device, parse_precision(precision_or_default(g)));
    return sam2::predict_sam2(model, input, options);
  }();
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

struct PredictIrisOptions {
  std::string checkpoint;
  std::string config;
  std::vector<std::string> references;
  std::vector<std::string> reference_masks;
  std::string query;
  std::string strategy = "one-shot";
  std::vector<int64_t> classes;
  std::vector<std::string> class_names;
  std::string out;
  bool bank = false;
  std::vector<int64_t> window;
  double overlap = 0.5;
  std::string blend = "gaussian";
  int64_t tuning_steps = 20;
  double tuning_lr = 1e-3;
  int64_t top_k = 3;
  std::string modality;
  bool write_prepared = false;
};

}  // namespace

void use_training_preparation(IrisPredictOptions& options, const IrisTrainConfig& config,
                              const std::string& modality) {
  options.slice_size = config.data.slice_size;
  options.in_channels = config.model.options.in_channels;
  options.prepare = config.data.source == "datasets";
  options.preprocess = config.data.preprocess;
  std::string name = modality;
  if (name.empty() && !config.data.datasets.empty()) name = config.data.datasets.front().modality;
  options.modality = name.empty() ? Modality::kMR : parse_modality(name);
}

namespace {

int run_predict_iris(const PredictIrisOptions& o, const GlobalOptions& g) {
#if IRIS_HAVE_NIFTI
  if (o.references.size() != o.reference_masks.size()) {
    throw UsageError(
        fmt::format("{} --reference but {} --reference-mask: give one mask per reference",
                    o.references.size(), o.reference_masks.size()));
  }
  const auto config = load_config<IrisTrainConfig>({o.config, {}});
  auto model = load_iris_checkpoint(o.checkpoint, config.model.options);
  const c10::Device device = resolve_device(g.device);
  model->to(device);
  IrisPredictOptions options;
  options.strategy = models::parse_strategy(o.strategy);
  options.classes = o.classes;
  options.class_names = o.class_names;
  use_training_preparation(options, config, o.modality);
  options.write_prepared = o.write_prepared;
  options.window.window = o.window;
  options.window.overlap = o.overlap;
  options.window.blend = o.blend == "linear" ? models::Blend::kLinear : models::Blend::kGaussian;
  options.tuning.steps = o.tuning_steps;
  options.tuning.lr = o.tuning_lr;
  options.retrieval.top_k = o.top_k;
  if (o.bank && options.strategy != models::Strategy::kRetrieval) {
    throw UsageError("--bank chooses where retrieval looks: use it with --strategy retrieval");
  }
  models::MemoryBank bank;
  if (o.bank) {
    bank = models::read_memory_bank(o.checkpoint);
    if (bank.size() == 0)
      throw InputError(file_message(o.checkpoint, "the checkpoint holds no memory bank entries"));
    options.bank = &bank;
    options.bank_dataset = config.data.label_map;
  }
  std::vector<ReferenceFiles> references;
  for (std::size_t i = 0; i < o.references.size(); ++i) {
    references.push_back({o.references[i], o.reference_masks[i]});
  }
  const auto result = [&] {
    AutocastScope autocast(device, parse_precision(precision_or_default(g)));
    return predict_iris(model, references, o.query, options, o.out);
  }();
  for (std::size_t k = 0; k < result.classes.size(); ++k) {
    std::cout << fmt::format("class {}: {} voxels\n", result.classes[k], result.voxels[k]);
  }
  std::cout << fmt::format("{} ({}): task {:.1f} ms, segmentation {:.1f} ms, total {:.1f} ms\n",
                           o.strategy, result.mode, result.task_ms, result.segment_ms,
                           result.total_ms);
  std::cout << fmt::format("wrote {} files under {}\n", result.written.size(), o.out);
  return 0;
#else
  (void)o, (void)g;
  throw NotAvailableError(
      "IRIS prediction needs NIfTI support, which is off in this build (IRIS_WITH_NIFTI)");
#endif
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
  s->add_flag("--offload-video", o->offload_video,
              "keep the decoded frames in host memory, one at a time on the device (long videos)");
  s->add_flag("--offload-state", o->offload_state,
              "keep memories and masks in host memory, moved to the device when read (long "
              "videos)");

  auto io = std::make_shared<PredictIrisOptions>();
  CLI::App* i = app.add_subcommand(
      "iris",
      "segment the classes of labelled reference images in a query image: PNG/JPEG slices or NIfTI "
      "volumes (masks keep the query's geometry)");
  i->add_option("--checkpoint", io->checkpoint, "IRIS checkpoint (run/checkpoints/best.pt)")
      ->required();
  i->add_option("--config", io->config, "the run's config.yaml (model sizes, slice size)")
      ->required();
  i->add_option("--reference", io->references, "labelled reference image (repeatable)");
  i->add_option("--reference-mask", io->reference_masks, "label map of the preceding --reference");
  i->add_option("--query", io->query, "image or volume to segment")->required();
  i->add_option("--strategy", io->strategy, "one-shot, ensemble, retrieval or tuning")
      ->check(CLI::IsMember({"one-shot", "ensemble", "retrieval", "tuning"}))
      ->capture_default_str();
  i->add_option("--classes", io->classes,
                "label values to segment (default: all in the first mask)")
      ->delimiter(',');
  i->add_option("--class-names", io->class_names, "names of --classes (memory-bank retrieval)")
      ->delimiter(',');
  i->add_option("--out", io->out, "output folder: mask.png or mask.nii.gz, prediction.json")
      ->required();
  i->add_flag("--bank", io->bank,
              "retrieval from the checkpoint's memory bank instead of the references");
  i->add_option("--window", io->window, "3D sliding window D,H,W (default: whole volume)")
      ->delimiter(',');
  i->add_option("--overlap", io->overlap, "sliding-window overlap in [0, 1)")
      ->capture_default_str();
  i->add_option("--blend", io->blend, "gaussian or linear blending of window logits")
      ->check(CLI::IsMember({"gaussian", "linear"}))
      ->capture_default_str();
  i->add_option("--tuning-steps", io->tuning_steps, "in-context tuning steps")
      ->capture_default_str();
  i->add_option("--tuning-lr", io->tuning_lr, "in-context tuning learning rate (Adam)")
      ->capture_default_str();
  i->add_option("--top-k", io->top_k, "retrieval: embeddings averaged per class")
      ->capture_default_str();
  i->add_option("--modality", io->modality,
                "CT, MR, PET or other: intensity preparation (default: the training data's)");
  i->add_flag("--write-prepared", io->write_prepared,
              "also write the mask on the prepared grid (RAS, data.preprocess spacing, cropped)");
  const GlobalOptions* g = &globals;
  return [o, s, io, i, g]() -> int {
    if (s->parsed()) return run_predict_sam2(*o, *g);
    if (i->parsed()) return run_predict_iris(*io, *g);
    throw UsageError("predict: expected a model: sam2 or iris");
  };
}

}  // namespace iris::cli
