// `iris predict sam2`: prompts on an image, a folder of frames, a video file or a NIfTI volume
// (slices as frames), tracking through all frames, and masks written in the input's own form
// (PNG label maps per frame, or a NIfTI label volume with the source geometry) plus an overlay.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "io/volume.h"
#include "models/sam2/sam2_model.h"

namespace iris::models::sam2 {

// One prompt in the input's own pixels (x right, y down; volumes: x = i, y = j of the slice).
struct Sam2Prompt {
  enum class Type { kPoints, kBox, kMask };
  Type type = Type::kPoints;
  int64_t frame = 0;
  int64_t obj_id = 1;
  std::vector<float> points;  // x0, y0, x1, y1, ... (kPoints)
  std::vector<int32_t> labels;
  std::vector<float> box;          // x0, y0, x1, y1 (kBox)
  std::filesystem::path mask_file;  // PNG, nonzero = object (kMask)
};

// "x,y,label" (label 1 positive, 0 negative; default 1) and "x0,y0,x1,y1". UsageError if
// malformed.
Sam2Prompt parse_point_prompt(const std::string& text, int64_t frame, int64_t obj_id);
Sam2Prompt parse_box_prompt(const std::string& text, int64_t frame, int64_t obj_id);
// A JSON list of {"frame", "obj_id", "type": "points"|"box"|"mask", "points": [[x, y], ...],
// "labels": [...], "box": [x0, y0, x1, y1], "mask": "file.png" (relative to the JSON file)}.
std::vector<Sam2Prompt> read_prompts_json(const std::filesystem::path& path);

// The input, decoded: frames as [H, W, 3] uint8 RGB.
struct PredictInput {
  enum class Kind { kImage, kFrames, kVideo, kVolume };
  Kind kind = Kind::kImage;
  std::filesystem::path path;
  std::vector<at::Tensor> frames;
  std::vector<std::string> frame_names;  // output file stems
  double fps = 0.0;                      // videos
  Volume volume;                         // volumes: geometry for the written labels
  int64_t height() const;
  int64_t width() const;
};
PredictInput load_predict_input(const std::filesystem::path& path);

// [T, 3, S, S] model inputs: bicubic with antialias on 0..255 values rounded back to bytes (as
// the official loader's PIL resize), then /255 and ImageNet normalisation.
at::Tensor preprocess_frames(const std::vector<at::Tensor>& frames, int64_t image_size);

struct PredictOptions {
  std::vector<Sam2Prompt> prompts;
  std::filesystem::path out;
  bool reverse = false;  // also propagate backwards from the first prompted frame
  bool overlay = true;
  // As the official init_state: frames in host memory, moved to the device one at a time;
  // memories and masks in host memory, moved to the device when read. Same results, less device
  // memory, a host-device copy per read (docs/sam2.md).
  bool offload_video_to_cpu = false;
  bool offload_state_to_cpu = false;
};

struct PredictResult {
  std::vector<int64_t> obj_ids;
  std::vector<std::vector<int64_t>> areas;  // [frame][object] pixels > 0
  std::vector<std::filesystem::path> written;
  double encoder_ms = 0.0;   // median per frame
  double tracking_ms = 0.0;  // median per frame
};

// Runs the prompts and the propagation, writes masks/, overlay and prediction.json under
// options.out. Progress is reported per frame.
PredictResult predict_sam2(Sam2Model& model, const PredictInput& input, const PredictOptions& options);

}  // namespace iris::models::sam2
