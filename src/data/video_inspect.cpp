#include "data/video_inspect.h"

#include <fmt/format.h>

#include "data/video_dataset.h"

namespace iris {

InspectReport inspect_video_dataset(const std::filesystem::path& path) {
  const VideoDataset ds = read_video_dataset(path);
  const VideoDatasetScan scan = scan_video_dataset(ds);
  InspectReport r;
  r.layout = layout_name(ds.layout) + " video dataset";
  r.facts.push_back(fmt::format("{} videos, {} frames", ds.videos.size(), ds.frame_count()));
  for (const auto& v : ds.videos) {
    r.facts.push_back(fmt::format("video {}: {} frames", v.id, v.frames.size()));
  }
  for (const auto& [size, n] : scan.sizes) {
    r.facts.push_back(fmt::format("frame size {}x{} (WxH): {} frames", size.first, size.second, n));
  }
  if (scan.unlabelled > 0) {
    r.facts.push_back(fmt::format("unlabelled pixels: {}", scan.unlabelled));
  }
  for (const auto& c : ds.classes) {
    const auto it = scan.pixels.find(c.value);
    r.classes.push_back(
        {layout_name(ds.layout), c.value, c.name, it == scan.pixels.end() ? 0 : it->second});
  }
  for (const auto& [value, n] : scan.pixels) {
    if (!ds.find_class(value)) r.classes.push_back({layout_name(ds.layout), value, "?", n});
  }
  r.problems = scan.problems;
  return r;
}

}  // namespace iris
