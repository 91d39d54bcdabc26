// The evaluation protocol for promptable video segmentation (docs/evaluation.md): each object is
// prompted from its ground truth on the first frame it appears in (point, box or mask, simulated
// by data/prompts.h), tracked through the rest of the video, and scored per (frame, class) with
// Dice, IoU, MAE and NSD, aggregated frame -> video -> class.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/prompts.h"
#include "data/video_dataset.h"
#include "eval/metrics.h"
#include "models/sam2/feature_cache.h"
#include "models/sam2/sam2_model.h"

namespace iris::eval {

struct VideoEvalOptions {
  PromptType prompt = PromptType::kPoint;
  PromptOptions prompt_options;
  uint64_t seed = 0;
  double nsd_tolerance = 2.0;  // pixels of the original frames
  bool ignore_empty = true;    // frames where a class is absent: left out of Dice/IoU/NSD means
  int64_t max_frames = 0;      // per video; 0 = all
  // Frame features through a frozen-encoder cache (same model); null: computed per frame.
  std::shared_ptr<models::sam2::CachedImageEncoder> encoder;
};

// One tracked object (a class of one video).
struct EvalObject {
  std::string video;
  int64_t class_value = 0;
  std::string class_name;
  int64_t first_frame = 0;  // the frame it was prompted on
  bool prompted = false;    // false when no prompt could be simulated
};

struct VideoEvalResult {
  std::vector<FrameScore> dice, iou, mae, nsd;
  Aggregate dice_summary, iou_summary, mae_summary, nsd_summary;
  std::vector<EvalObject> objects;
  int64_t videos = 0;
  int64_t frames = 0;
  double seconds = 0.0;
};

VideoEvalResult evaluate_sam2_video(models::sam2::Sam2Model& model, const VideoDataset& dataset,
                                    const VideoEvalOptions& options);

// eval.json (options, summaries, per-class and per-video tables, objects), per_class.md.
void write_video_eval(const VideoEvalResult& result, const VideoEvalOptions& options,
                      const std::filesystem::path& out);

}  // namespace iris::eval
