// A short tracking session used to compare the video predictor with and without offloading.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <filesystem>
#include <vector>

#include "data/synthetic_video.h"
#include "models/sam2/sam2_loader.h"
#include "models/sam2/sam2_predict.h"
#include "models/sam2/video_predictor.h"
#include "test_util.h"

namespace iris::models::sam2::offload {

inline std::filesystem::path micro_fixture() {
  return test::sam2_fixture();
}

// Two objects through a synthetic clip with the micro fixture's weights on `device`: a mask on
// frame 0, a box on frame 3, propagation forward then backward from frame 3, a correction click
// on an already tracked frame (which reads the stored masks back) and a second propagation.
// Returns every mask the predictor handed out, in order, on the CPU.
inline std::vector<at::Tensor> track_synthetic_clip(const c10::Device& device,
                                                    const VideoStateOptions& state) {
  SyntheticVideoOptions o;
  o.videos = 1;
  o.frames = 6;
  o.width = 256;
  o.height = 256;
  o.instruments = 2;
  o.seed = 4;
  std::vector<at::Tensor> images, instances;
  for (int64_t t = 0; t < o.frames; ++t) {
    auto f = render_synthetic_frame(o, 0, t);
    images.push_back(f.image);
    instances.push_back(f.instance);
  }
  Sam2LoadOptions load;
  load.official_postprocessing = true;
  auto model = load_sam2(micro_fixture() / "config.yaml", micro_fixture() / "checkpoint.pt", load);
  model->to(device);
  Sam2VideoPredictor predictor(model);
  predictor.init_state(preprocess_frames(images, model->image_size()), o.height, o.width, state);

  // The instrument covering most of frame t (nonzero on these frames of seed 4).
  auto largest = [&](int64_t t) {
    at::Tensor best = instances[t] == 1;
    for (int64_t k = 2; k <= o.instruments; ++k) {
      if ((instances[t] == k).sum().item<int64_t>() > best.sum().item<int64_t>()) {
        best = instances[t] == k;
      }
    }
    return best;
  };
  std::vector<at::Tensor> masks;
  auto keep = [&](const at::Tensor& m) { masks.push_back(m.cpu()); };
  auto on_frame = [&](int64_t, const at::Tensor& m) { keep(m); };
  keep(predictor.add_new_mask(0, 1, largest(0)));
  const auto nz = at::nonzero(largest(3));
  const auto y = nz.select(1, 0), x = nz.select(1, 1);
  const auto box = at::stack({x.min(), y.min(), x.max(), y.max()}).to(at::kFloat);
  keep(predictor.add_new_points_or_box(3, 2, std::nullopt, std::nullopt, box));
  predictor.propagate_in_video(on_frame);
  predictor.propagate_in_video(on_frame, 3, std::nullopt, /*reverse=*/true);
  // [1, 2] xy of the first pixel of frame 4's largest instrument.
  const auto click = at::nonzero(largest(4))[0].flip(0).to(at::kFloat).unsqueeze(0);
  keep(predictor.add_new_points_or_box(4, 1, click, at::ones({1}, at::kInt), std::nullopt,
                                       /*clear_old_points=*/false));
  predictor.propagate_in_video(on_frame);
  return masks;
}

}  // namespace iris::models::sam2::offload
