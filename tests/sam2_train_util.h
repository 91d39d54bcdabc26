// Inputs of the small SAM2 fine-tuning runs the trainer tests compare.
#pragma once

#include <filesystem>

#include "data/synthetic_video.h"

namespace iris::test {

// dir/train: one 8-frame 128x128 video with two instruments; dir/val: one of 2 frames.
inline void write_tiny_train_and_val_videos(const std::filesystem::path& dir) {
  SyntheticVideoOptions s;
  s.videos = 1;
  s.frames = 8;
  s.width = 128;
  s.height = 128;
  s.instruments = 2;
  s.seed = 5;
  write_synthetic_videos(s, dir / "train");
  s.frames = 2;
  s.seed = 6;
  write_synthetic_videos(s, dir / "val");
}

}  // namespace iris::test
