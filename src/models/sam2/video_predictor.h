// Interactive tracking over a video (or the slices of a volume), as the official
// SAM2VideoPredictor: prompts (points, box, mask) on any frame for any object, correction
// prompts after tracking, propagation forward or in reverse.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "models/sam2/sam2_model.h"

namespace iris::models::sam2 {

struct VideoStateOptions {
  bool offload_video_to_cpu = false;  // keep frames in host memory
  bool offload_state_to_cpu = false;  // keep memories and masks in host memory (long videos)
};

class Sam2VideoPredictor {
 public:
  explicit Sam2VideoPredictor(Sam2Model model);

  // frames: [T, 3, S, S] model inputs (resized to image_size, normalised); masks are returned
  // at the original video_height x video_width.
  void init_state(const at::Tensor& frames, int64_t video_height, int64_t video_width,
                  const VideoStateOptions& options = {});
  void reset_state();

  // Computes a frame's backbone instead of model->forward_image (a feature cache, for one);
  // set before init_state. image: [1, 3, S, S] on the model's device.
  using BackboneFn = std::function<BackboneOut(int64_t frame_idx, const at::Tensor& image)>;
  void set_backbone_fn(BackboneFn fn) { backbone_fn_ = std::move(fn); }

  // points: [N, 2] xy, labels: [N] (1 positive, 0 negative); box: [4] xyxy. With
  // normalize_coords (the official default) coordinates are video pixels; without, they are
  // already in [0, 1]. Returns [num_objects, 1, H, W] mask logits of the frame.
  at::Tensor add_new_points_or_box(int64_t frame_idx, int64_t obj_id,
                                   const std::optional<at::Tensor>& points,
                                   const std::optional<at::Tensor>& labels,
                                   const std::optional<at::Tensor>& box = std::nullopt,
                                   bool clear_old_points = true, bool normalize_coords = true);
  // mask: [H, W] (any size; resized to the model input), nonzero = object.
  at::Tensor add_new_mask(int64_t frame_idx, int64_t obj_id, const at::Tensor& mask);

  // Calls on_frame(frame_idx, masks [num_objects, 1, H, W]) for every frame in processing order.
  void propagate_in_video(
      const std::function<void(int64_t, const at::Tensor&)>& on_frame,
      std::optional<int64_t> start_frame_idx = std::nullopt,
      std::optional<int64_t> max_frame_num_to_track = std::nullopt, bool reverse = false);

  const std::vector<int64_t>& obj_ids() const { return obj_ids_; }
  int64_t num_frames() const { return num_frames_; }
  Sam2Model& model() { return model_; }

  // Per-frame timings of the last propagate_in_video (ms): the image encoder, and the rest of
  // the frame (memory attention, SAM heads and memory encoder over all objects).
  struct Timing {
    std::vector<double> encoder_ms;
    std::vector<double> tracking_ms;
  };
  const Timing& last_timing() const { return timing_; }

 private:
  struct ObjectState {
    std::map<int64_t, PointInputs> point_inputs;
    std::map<int64_t, at::Tensor> mask_inputs;
    ObjectMemory output;
    ObjectMemory temp;                 // outputs of prompts not yet propagated
    std::map<int64_t, bool> tracked;   // frame -> tracked in reverse
  };

  int64_t obj_index(int64_t obj_id);
  const FrameFeatures& image_features(int64_t frame_idx);
  FrameOutput run_single_frame(ObjectState& obj, int64_t frame_idx, bool is_init_cond_frame,
                               const std::optional<PointInputs>& points, const at::Tensor& mask,
                               bool reverse, bool run_mem_encoder,
                               const at::Tensor& prev_sam_mask_logits, at::Tensor* pred_masks_full);
  at::Tensor consolidated_video_masks(int64_t frame_idx, bool is_cond);
  at::Tensor to_video_res(const at::Tensor& masks) const;
  void preflight();
  at::Tensor shared_pos_enc(const at::Tensor& pos);

  Sam2Model model_;
  BackboneFn backbone_fn_;
  c10::Device device_{c10::kCPU};
  c10::Device storage_device_{c10::kCPU};
  at::Tensor frames_;
  int64_t num_frames_ = 0;
  int64_t video_h_ = 0, video_w_ = 0;
  std::vector<int64_t> obj_ids_;
  std::vector<ObjectState> objects_;
  int64_t cached_frame_ = -1;
  FrameFeatures cached_features_;
  at::Tensor maskmem_pos_enc_;  // the same for every frame and object
  Timing timing_;
  double encoder_ms_ = 0.0;  // image-encoder time since the last reset
};

}  // namespace iris::models::sam2
