#include "models/sam2/video_predictor.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "core/error.h"

namespace iris::models::sam2 {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Sam2VideoPredictor::Sam2VideoPredictor(Sam2Model model) : model_(std::move(model)) {
  model_->eval();
  const auto params = model_->parameters();
  if (!params.empty()) device_ = params.front().device();
}

void Sam2VideoPredictor::init_state(const at::Tensor& frames, int64_t video_height,
                                    int64_t video_width, const VideoStateOptions& options) {
  torch::NoGradGuard guard;  // not InferenceMode: cached constants must stay usable in training
  const int64_t s = model_->image_size();
  TORCH_CHECK(frames.dim() == 4 && frames.size(1) == 3 && frames.size(2) == s && frames.size(3) == s,
              "SAM2 video frames must be [T, 3, ", s, ", ", s, "], got ", frames.sizes());
  TORCH_CHECK(frames.size(0) > 0, "the video has no frames");
  frames_ = options.offload_video_to_cpu ? frames.to(torch::kCPU) : frames.to(device_);
  num_frames_ = frames.size(0);
  video_h_ = video_height;
  video_w_ = video_width;
  storage_device_ = options.offload_state_to_cpu ? c10::Device(c10::kCPU) : device_;
  reset_state();
  cached_frame_ = -1;
  maskmem_pos_enc_ = at::Tensor();
  image_features(0);  // warm up, as the official init_state
}

void Sam2VideoPredictor::reset_state() {
  obj_ids_.clear();
  objects_.clear();
}

int64_t Sam2VideoPredictor::obj_index(int64_t obj_id) {
  auto it = std::find(obj_ids_.begin(), obj_ids_.end(), obj_id);
  if (it != obj_ids_.end()) return it - obj_ids_.begin();
  obj_ids_.push_back(obj_id);
  objects_.emplace_back();
  return static_cast<int64_t>(objects_.size()) - 1;
}

const FrameFeatures& Sam2VideoPredictor::image_features(int64_t frame_idx) {
  TORCH_CHECK(frames_.defined(), "call init_state before prompting");
  if (frame_idx < 0 || frame_idx >= num_frames_) {
    throw InputError("frame " + std::to_string(frame_idx) + " is out of range: the video has " +
                     std::to_string(num_frames_) + " frames (0.." + std::to_string(num_frames_ - 1) +
                     ")");
  }
  if (cached_frame_ != frame_idx) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto image = frames_[frame_idx].to(device_).to(torch::kFloat32).unsqueeze(0);
    cached_features_ = model_->prepare_backbone_features(
        backbone_fn_ ? backbone_fn_(frame_idx, image) : model_->forward_image(image));
    cached_frame_ = frame_idx;
    encoder_ms_ += ms_since(t0);
  }
  return cached_features_;
}

at::Tensor Sam2VideoPredictor::shared_pos_enc(const at::Tensor& pos) {
  if (!pos.defined()) return pos;
  if (!maskmem_pos_enc_.defined()) maskmem_pos_enc_ = pos.slice(0, 0, 1).clone();
  return maskmem_pos_enc_.expand({pos.size(0), -1, -1, -1});
}

FrameOutput Sam2VideoPredictor::run_single_frame(ObjectState& obj, int64_t frame_idx,
                                                 bool is_init_cond_frame,
                                                 const std::optional<PointInputs>& points,
                                                 const at::Tensor& mask, bool reverse,
                                                 bool run_mem_encoder,
                                                 const at::Tensor& prev_sam_mask_logits,
                                                 at::Tensor* pred_masks_full) {
  const auto& features = image_features(frame_idx);
  auto out = model_->track_step(frame_idx, is_init_cond_frame, features, points, mask, obj.output,
                                num_frames_, reverse, run_mem_encoder, prev_sam_mask_logits);
  FrameOutput compact;
  if (out.maskmem_features.defined()) {
    compact.maskmem_features = out.maskmem_features.to(torch::kBFloat16).to(storage_device_);
  }
  auto pred = out.pred_masks;
  const auto& cfg = model_->config();
  if (cfg.fill_hole_area > 0) pred = fill_holes_in_mask_scores(pred, cfg.fill_hole_area);
  compact.pred_masks = pred.to(storage_device_);
  compact.maskmem_pos_enc = shared_pos_enc(out.maskmem_pos_enc);
  compact.obj_ptr = out.obj_ptr;
  compact.object_score_logits = out.object_score_logits;
  if (pred_masks_full) *pred_masks_full = pred;
  return compact;
}

at::Tensor Sam2VideoPredictor::to_video_res(const at::Tensor& masks) const {
  auto m = masks.to(device_);
  if (m.size(-2) != video_h_ || m.size(-1) != video_w_) m = resize_bilinear(m, video_h_, video_w_);
  if (model_->config().non_overlap_masks) m = model_->apply_non_overlapping_constraints(m);
  return m;
}

at::Tensor Sam2VideoPredictor::consolidated_video_masks(int64_t frame_idx, bool is_cond) {
  const int64_t n = static_cast<int64_t>(objects_.size());
  // On the compute device whatever the storage: offloading must not change the resized masks.
  auto all = torch::full({n, 1, video_h_, video_w_}, kNoObjectScore,
                         torch::TensorOptions().dtype(torch::kFloat32).device(device_));
  for (int64_t i = 0; i < n; ++i) {
    const auto& obj = objects_[i];
    const FrameOutput* out = nullptr;
    if (is_cond) {
      out = obj.temp.find_cond(frame_idx);
    } else if (auto it = obj.temp.non_cond_frame_outputs.find(frame_idx);
               it != obj.temp.non_cond_frame_outputs.end()) {
      out = &it->second;
    }
    if (!out) out = obj.output.find_cond(frame_idx);
    if (!out) {
      auto it = obj.output.non_cond_frame_outputs.find(frame_idx);
      if (it != obj.output.non_cond_frame_outputs.end()) out = &it->second;
    }
    if (!out) continue;
    auto m = out->pred_masks.to(device_);
    if (m.size(-2) != video_h_ || m.size(-1) != video_w_)
      m = resize_bilinear(m, video_h_, video_w_);
    all.slice(0, i, i + 1).copy_(m);
  }
  return to_video_res(all);
}

at::Tensor Sam2VideoPredictor::add_new_points_or_box(int64_t frame_idx, int64_t obj_id,
                                                     const std::optional<at::Tensor>& points_in,
                                                     const std::optional<at::Tensor>& labels_in,
                                                     const std::optional<at::Tensor>& box,
                                                     bool clear_old_points, bool normalize_coords) {
  torch::NoGradGuard guard;  // not InferenceMode: cached constants must stay usable in training
  if (points_in.has_value() != labels_in.has_value()) {
    throw InputError("point_coords and point_labels must be given together");
  }
  if (!points_in && !box) throw InputError("a prompt needs points or a box");
  image_features(frame_idx);  // validates the frame index before any state changes
  auto points = points_in ? points_in->to(torch::kFloat32).cpu() : torch::zeros({0, 2});
  auto labels = labels_in ? labels_in->to(torch::kInt32).cpu() : torch::zeros({0}, torch::kInt32);
  if (points.dim() == 2) points = points.unsqueeze(0);
  if (labels.dim() == 1) labels = labels.unsqueeze(0);
  if (points.dim() != 3 || points.size(2) != 2 || labels.dim() != 2 ||
      labels.size(1) != points.size(1)) {
    throw InputError("point_coords must be [N, 2] and point_labels [N], got " +
                     std::to_string(points.size(1)) + " points and " +
                     std::to_string(labels.size(-1)) + " labels");
  }
  if (box) {
    if (!clear_old_points) {
      throw InputError("a box must come before any point on a frame: add it with the old points "
                       "cleared");
    }
    if (box->numel() != 4) throw InputError("a box is 4 numbers x0,y0,x1,y1");
    points = torch::cat({box->to(torch::kFloat32).cpu().reshape({1, 2, 2}), points}, 1);
    labels = torch::cat({torch::tensor({2, 3}, torch::kInt32).reshape({1, 2}), labels}, 1);
  }
  if (normalize_coords) {
    points = points / torch::tensor({static_cast<float>(video_w_), static_cast<float>(video_h_)});
  }
  points = (points * static_cast<double>(model_->image_size())).to(device_);
  labels = labels.to(device_);

  const int64_t idx = obj_index(obj_id);
  auto& obj = objects_[idx];
  PointInputs inputs{points, labels};
  if (!clear_old_points) {
    if (auto it = obj.point_inputs.find(frame_idx); it != obj.point_inputs.end()) {
      inputs.point_coords = torch::cat({it->second.point_coords, points}, 1);
      inputs.point_labels = torch::cat({it->second.point_labels, labels}, 1);
    }
  }
  obj.point_inputs[frame_idx] = inputs;
  obj.mask_inputs.erase(frame_idx);

  const bool is_init_cond_frame = !obj.tracked.count(frame_idx);
  const bool reverse = is_init_cond_frame ? false : obj.tracked[frame_idx];
  const bool is_cond = is_init_cond_frame || model_->config().add_all_frames_to_correct_as_cond;

  const FrameOutput* prev = nullptr;
  if (is_cond) {
    prev = obj.temp.find_cond(frame_idx);
  } else if (auto it = obj.temp.non_cond_frame_outputs.find(frame_idx);
             it != obj.temp.non_cond_frame_outputs.end()) {
    prev = &it->second;
  }
  if (!prev) prev = obj.output.find_cond(frame_idx);
  if (!prev) {
    auto it = obj.output.non_cond_frame_outputs.find(frame_idx);
    if (it != obj.output.non_cond_frame_outputs.end()) prev = &it->second;
  }
  at::Tensor prev_logits;
  if (prev && prev->pred_masks.defined()) {
    prev_logits = torch::clamp(prev->pred_masks.to(device_), -32.0, 32.0);
  }
  auto out = run_single_frame(obj, frame_idx, is_init_cond_frame, inputs, at::Tensor(), reverse,
                              /*run_mem_encoder=*/false, prev_logits, nullptr);
  if (is_cond) {
    obj.temp.set_cond(frame_idx, std::move(out));
  } else {
    obj.temp.non_cond_frame_outputs[frame_idx] = std::move(out);
  }
  return consolidated_video_masks(frame_idx, is_cond);
}

at::Tensor Sam2VideoPredictor::add_new_mask(int64_t frame_idx, int64_t obj_id,
                                            const at::Tensor& mask) {
  torch::NoGradGuard guard;  // not InferenceMode: cached constants must stay usable in training
  if (mask.dim() != 2) {
    throw InputError("a mask prompt must be a 2D [H, W] mask, got " + std::to_string(mask.dim()) +
                     " dimensions");
  }
  image_features(frame_idx);
  const int64_t s = model_->image_size();
  auto m = (mask != 0).to(torch::kFloat32).to(device_).unsqueeze(0).unsqueeze(0);
  if (m.size(2) != s || m.size(3) != s) {
    m = (resize_bilinear(m, s, s, /*antialias=*/true) >= 0.5).to(torch::kFloat32);
  }
  const int64_t idx = obj_index(obj_id);
  auto& obj = objects_[idx];
  obj.mask_inputs[frame_idx] = m;
  obj.point_inputs.erase(frame_idx);

  const bool is_init_cond_frame = !obj.tracked.count(frame_idx);
  const bool reverse = is_init_cond_frame ? false : obj.tracked[frame_idx];
  const bool is_cond = is_init_cond_frame || model_->config().add_all_frames_to_correct_as_cond;
  auto out = run_single_frame(obj, frame_idx, is_init_cond_frame, std::nullopt, m, reverse,
                              /*run_mem_encoder=*/false, at::Tensor(), nullptr);
  if (is_cond) {
    obj.temp.set_cond(frame_idx, std::move(out));
  } else {
    obj.temp.non_cond_frame_outputs[frame_idx] = std::move(out);
  }
  return consolidated_video_masks(frame_idx, is_cond);
}

void Sam2VideoPredictor::preflight() {
  if (objects_.empty()) throw InputError("no prompts were given: add points, a box or a mask first");
  const int64_t s = model_->image_size();
  const auto& cfg = model_->config();
  for (size_t i = 0; i < objects_.size(); ++i) {
    auto& obj = objects_[i];
    auto encode = [&](int64_t frame_idx, FrameOutput& out) {
      if (out.maskmem_features.defined()) return;
      const auto high_res = resize_bilinear(out.pred_masks.to(device_), s, s);
      const auto& features = image_features(frame_idx);
      auto [feats, pos] = model_->encode_new_memory(features, high_res, out.object_score_logits,
                                                    /*is_mask_from_pts=*/true);
      out.maskmem_features = feats.to(torch::kBFloat16).to(storage_device_);
      out.maskmem_pos_enc = shared_pos_enc(pos);
    };
    auto clear_around = [&](int64_t frame_idx) {
      if (!cfg.clear_non_cond_mem_around_input) return;
      const int64_t r = cfg.memory_temporal_stride_for_eval * cfg.num_maskmem;
      for (int64_t t = frame_idx - r; t <= frame_idx + r; ++t) obj.output.non_cond_frame_outputs.erase(t);
    };
    for (auto& [frame_idx, out] : obj.temp.non_cond_frame_outputs) {
      encode(frame_idx, out);
      obj.output.non_cond_frame_outputs[frame_idx] = out;
      clear_around(frame_idx);
    }
    obj.temp.non_cond_frame_outputs.clear();
    for (auto& [frame_idx, out] : obj.temp.cond_frame_outputs) {
      encode(frame_idx, out);
      obj.output.set_cond(frame_idx, out);
      clear_around(frame_idx);
    }
    obj.temp.cond_frame_outputs.clear();
    if (obj.output.cond_frame_outputs.empty()) {
      throw InputError("object " + std::to_string(obj_ids_[i]) +
                       " has no prompt: add points, a box or a mask for it first");
    }
    for (const auto& [frame_idx, out] : obj.output.cond_frame_outputs) {
      obj.output.non_cond_frame_outputs.erase(frame_idx);
    }
  }
}

void Sam2VideoPredictor::propagate_in_video(
    const std::function<void(int64_t, const at::Tensor&)>& on_frame,
    std::optional<int64_t> start_frame_idx, std::optional<int64_t> max_frame_num_to_track,
    bool reverse) {
  torch::NoGradGuard guard;  // not InferenceMode: cached constants must stay usable in training
  preflight();
  timing_ = Timing{};
  int64_t start = std::numeric_limits<int64_t>::max();
  if (start_frame_idx) {
    start = *start_frame_idx;
  } else {
    for (const auto& obj : objects_) {
      for (const auto& [t, out] : obj.output.cond_frame_outputs) start = std::min(start, t);
    }
  }
  const int64_t max_track = max_frame_num_to_track.value_or(num_frames_);
  std::vector<int64_t> order;
  if (reverse) {
    const int64_t end = std::max<int64_t>(start - max_track, 0);
    if (start > 0) {
      for (int64_t t = start; t >= end; --t) order.push_back(t);
    }
  } else {
    const int64_t end = std::min(start + max_track, num_frames_ - 1);
    for (int64_t t = start; t <= end; ++t) order.push_back(t);
  }
  for (int64_t frame_idx : order) {
    const auto t0 = std::chrono::steady_clock::now();
    encoder_ms_ = 0.0;
    std::vector<at::Tensor> per_obj;
    for (auto& obj : objects_) {
      at::Tensor pred;
      if (const auto* cond = obj.output.find_cond(frame_idx)) {
        pred = cond->pred_masks.to(device_);
        if (model_->config().clear_non_cond_mem_around_input) {
          const int64_t r = model_->config().memory_temporal_stride_for_eval *
                            model_->config().num_maskmem;
          for (int64_t t = frame_idx - r; t <= frame_idx + r; ++t) {
            obj.output.non_cond_frame_outputs.erase(t);
          }
        }
      } else {
        auto out = run_single_frame(obj, frame_idx, /*is_init_cond_frame=*/false, std::nullopt,
                                    at::Tensor(), reverse, /*run_mem_encoder=*/true, at::Tensor(),
                                    &pred);
        obj.output.non_cond_frame_outputs[frame_idx] = std::move(out);
      }
      obj.tracked[frame_idx] = reverse;
      per_obj.push_back(pred);
    }
    const auto masks = to_video_res(torch::cat(per_obj, 0));
    timing_.encoder_ms.push_back(encoder_ms_);
    timing_.tracking_ms.push_back(ms_since(t0) - encoder_ms_);
    if (on_frame) on_frame(frame_idx, masks);
  }
}

}  // namespace iris::models::sam2
