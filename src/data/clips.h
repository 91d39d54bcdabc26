// Clip sampling over a video dataset (SAM2-style training and evaluation): windows of `length`
// frames every `stride` frames inside one video, the frames that receive prompts, and the objects
// to track. Objects are those present in a prompted frame; an object that first appears later is
// kept in the clip and reported (prompt_frame -1) unless prompt_on_appearance gives it a prompt
// on the frame where it appears.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/video_dataset.h"

namespace iris {

struct ClipOptions {
  int64_t length = 10;  // frames per clip
  int64_t stride = 10;  // first frames of consecutive clips this far apart
  int64_t frame_step = 1;  // take every frame_step-th frame inside a clip
  bool keep_partial = false;  // a shorter last clip of a video instead of dropping it
  std::vector<int64_t> prompted_frames{0};  // positions inside the clip
  bool prompt_on_appearance = false;
  int64_t min_object_pixels = 1;  // fewer pixels count as absent
};

// The study's settings per dataset (10-frame clips, stride 10, prompts on the first frame).
ClipOptions default_clip_options(VideoLayout layout);

struct ClipRef {
  int64_t video = 0;           // index into dataset.videos
  std::vector<int64_t> frames;  // indices into that video's frames
};

// Every clip of the dataset in video order; clips never cross videos.
std::vector<ClipRef> enumerate_clips(const VideoDataset& dataset, const ClipOptions& options);

struct ClipObject {
  int64_t class_value = 0;
  std::string name;
  int64_t first_frame = -1;   // position in the clip where it first has pixels
  int64_t prompt_frame = -1;  // position whose mask gives its prompt; -1: appears only later
};

struct ClipSample {
  std::string video_id;
  std::vector<int64_t> frame_indices;  // VideoFrame::index of each position
  at::Tensor frames;                   // [T, H, W, 3] uint8 RGB
  at::Tensor masks;                    // [T, O, H, W] uint8 0/1, objects in `objects` order
  std::vector<ClipObject> objects;     // prompted objects first, then late ones
  std::vector<int64_t> prompted_frames;  // positions (valid ones of options.prompted_frames)

  // Objects that appear only after the prompted frames (not prompted).
  std::vector<ClipObject> late_objects() const;
};

// Loads the frames and object masks of a clip. Objects are matched across frames by class value
// and name (EndoVis17 instrument, COCO category).
ClipSample load_clip(const VideoDataset& dataset, const ClipRef& clip, const ClipOptions& options);

}  // namespace iris
