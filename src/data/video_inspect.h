// `iris data inspect` for the surgical video layouts (CholecSeg8k, EndoVis17/18, COCO-video).
#pragma once

#include <filesystem>

#include "data/inspect.h"

namespace iris {

// Reads the tree, decodes every frame and mask, and reports classes with pixel counts, videos,
// frames, frame sizes and every problem. InputError when `path` is not one of these layouts.
InspectReport inspect_video_dataset(const std::filesystem::path& path);

}  // namespace iris
