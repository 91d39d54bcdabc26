#include "data/clips.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "core/error.h"
#include "data/video_dataset.h"

namespace iris {

ClipOptions default_clip_options(VideoLayout layout) {
  // The study uses 10 frames with stride 10 for CholecSeg8k, EndoVis17 and EndoVis18 alike.
  (void)layout;
  return ClipOptions{};
}

std::vector<ClipRef> enumerate_clips(const VideoDataset& dataset, const ClipOptions& o) {
  if (o.length < 1 || o.stride < 1 || o.frame_step < 1) {
    throw InputError(fmt::format("clip options: length ({}), stride ({}) and frame_step ({}) must "
                                 "be positive",
                                 o.length, o.stride, o.frame_step));
  }
  const int64_t span = (o.length - 1) * o.frame_step + 1;
  std::vector<ClipRef> clips;
  for (int64_t v = 0; v < static_cast<int64_t>(dataset.videos.size()); ++v) {
    const int64_t n = dataset.videos[v].frames.size();
    for (int64_t start = 0; start < n; start += o.stride) {
      if (start + span > n && !o.keep_partial) break;
      ClipRef clip{v, {}};
      for (int64_t f = start; f < std::min(n, start + span); f += o.frame_step) {
        clip.frames.push_back(f);
      }
      clips.push_back(std::move(clip));
    }
  }
  return clips;
}

std::vector<ClipObject> ClipSample::late_objects() const {
  std::vector<ClipObject> late;
  for (const auto& o : objects) {
    if (std::find(prompted_frames.begin(), prompted_frames.end(), o.prompt_frame) ==
        prompted_frames.end()) {
      late.push_back(o);
    }
  }
  return late;
}

ClipSample load_clip(const VideoDataset& dataset, const ClipRef& clip, const ClipOptions& options) {
  TORCH_CHECK(clip.video >= 0 && clip.video < static_cast<int64_t>(dataset.videos.size()),
              "load_clip: video ", clip.video, " out of range");
  TORCH_CHECK(!clip.frames.empty(), "load_clip: a clip without frames");
  const Video& video = dataset.videos[clip.video];
  const int64_t t_len = clip.frames.size();
  ClipSample sample;
  sample.video_id = video.id;
  for (int64_t p : options.prompted_frames) {
    if (p >= 0 && p < t_len) sample.prompted_frames.push_back(p);
  }
  std::sort(sample.prompted_frames.begin(), sample.prompted_frames.end());
  sample.prompted_frames.erase(
      std::unique(sample.prompted_frames.begin(), sample.prompted_frames.end()),
      sample.prompted_frames.end());

  // Object key: class value, name and the occurrence of that pair within a frame (COCO instances).
  using Key = std::tuple<int64_t, std::string, int64_t>;
  std::map<Key, std::vector<at::Tensor>> per_object;  // key -> [T] masks (undefined = absent)
  std::map<Key, int64_t> first_seen;
  std::vector<Key> order;  // first appearance order
  std::vector<at::Tensor> frames;
  int64_t h = 0, w = 0;
  for (int64_t t = 0; t < t_len; ++t) {
    const VideoFrame& frame = video.frames.at(clip.frames[t]);
    sample.frame_indices.push_back(frame.index);
    frames.push_back(load_frame_image(frame));
    if (t == 0) {
      h = frames[0].size(0), w = frames[0].size(1);
    } else if (frames[t].size(0) != h || frames[t].size(1) != w) {
      throw InputError(file_message(
          frame.image.string(), fmt::format("frame is {}x{} but the clip's first frame is {}x{} "
                                            "(WxH)",
                                            frames[t].size(1), frames[t].size(0), w, h)));
    }
    std::map<std::pair<int64_t, std::string>, int64_t> occurrences;
    for (auto& object : load_object_masks(dataset, frame)) {
      const int64_t k = occurrences[{object.class_value, object.name}]++;
      const Key key{object.class_value, object.name, k};
      at::Tensor m = (object.mask != 0).to(at::kByte);
      if (m.sum().item<int64_t>() < options.min_object_pixels) continue;
      auto& masks = per_object[key];
      if (masks.empty()) {
        masks.resize(t_len);
        first_seen[key] = t;
        order.push_back(key);
      }
      masks[t] = std::move(m);
    }
  }
  sample.frames = at::stack(frames);

  std::vector<std::pair<ClipObject, Key>> prompted, late;
  for (const Key& key : order) {
    ClipObject object{std::get<0>(key), std::get<1>(key), first_seen[key], -1};
    for (int64_t p : sample.prompted_frames) {
      if (per_object[key][p].defined()) {
        object.prompt_frame = p;
        break;
      }
    }
    if (object.prompt_frame >= 0) {
      prompted.push_back({object, key});
    } else {
      if (options.prompt_on_appearance) object.prompt_frame = object.first_frame;
      late.push_back({object, key});
    }
  }
  prompted.insert(prompted.end(), late.begin(), late.end());
  const int64_t n_obj = prompted.size();
  sample.masks = at::zeros({t_len, n_obj, h, w}, at::kByte);
  for (int64_t i = 0; i < n_obj; ++i) {
    sample.objects.push_back(prompted[i].first);
    const auto& masks = per_object[prompted[i].second];
    for (int64_t t = 0; t < t_len; ++t) {
      if (masks[t].defined()) sample.masks[t][i].copy_(masks[t]);
    }
  }
  return sample;
}

}  // namespace iris
