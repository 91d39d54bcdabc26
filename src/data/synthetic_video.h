// Synthetic surgical-like video clips, deterministic by seed: textured tissue seen through an
// endoscope (dark corners), two anatomy regions, and instruments (shaft, wrist, two jaws) that
// enter and leave the field, move, rotate, open their jaws and occlude each other, with specular
// highlights and motion blur. Written in a native layout so the dataset adapters read it back.
// Two visual domains share the scene geometry and the classes: A (warm light, dark instruments)
// and B (cool light, fine tissue texture, bright metallic instruments, more blur and noise), so a
// model trained on one meets a domain shift on the other.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/video_dataset.h"

namespace iris {

enum class SyntheticDomain { kA, kB };

// "a" or "b" (case-insensitive); throws InputError otherwise.
SyntheticDomain parse_synthetic_domain(const std::string& name);
const char* synthetic_domain_name(SyntheticDomain domain);

struct SyntheticVideoOptions {
  int64_t videos = 2;
  int64_t frames = 8;
  int64_t width = 320;
  int64_t height = 256;
  int64_t instruments = 3;  // per video, 1..4
  uint64_t seed = 0;
  VideoLayout layout = VideoLayout::kEndoVis18;
  SyntheticDomain domain = SyntheticDomain::kA;  // appearance only: same scenes, same labels
};

// Scene parts of one rendered frame, before any dataset's class table.
enum SyntheticPart : uint8_t {
  kPartTissue = 0,
  kPartAnatomyA = 1,  // liver / kidney-like
  kPartAnatomyB = 2,  // gallbladder / covered-kidney-like
  kPartBorder = 3,    // outside the endoscope's field
  kPartShaft = 4,
  kPartWrist = 5,
  kPartJaws = 6,
};

struct SyntheticFrame {
  at::Tensor image;     // [H, W, 3] uint8 RGB
  at::Tensor parts;     // [H, W] uint8 SyntheticPart
  at::Tensor instance;  // [H, W] int64: 0 none, k = instrument k (1-based) on top at that pixel
  std::vector<int64_t>
      instrument_types;  // per instrument k-1: 0 grasper, 1 hook/scissors, 2 needle driver
};

// Renders frame `t` of video `video`; the same options, video and t give the same pixels.
SyntheticFrame render_synthetic_frame(const SyntheticVideoOptions& options, int64_t video,
                                      int64_t t);

// Writes options.videos clips of options.frames frames into `out` in options.layout; returns the
// number of frames written.
int64_t write_synthetic_videos(const SyntheticVideoOptions& options,
                               const std::filesystem::path& out);

}  // namespace iris
