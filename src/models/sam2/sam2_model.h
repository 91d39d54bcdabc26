// SAM2 / SAM2.1 (the official SAM2Base): image encoder, prompt encoder, mask decoder, memory
// encoder and memory attention, and one tracking step over a frame with the memory bank of one
// object (or a batch of objects sharing the frame).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "models/sam2/common.h"
#include "models/sam2/image_encoder.h"
#include "models/sam2/mask_decoder.h"
#include "models/sam2/memory_attention.h"
#include "models/sam2/memory_encoder.h"
#include "models/sam2/prompt_encoder.h"
#include "models/sam2/sam2_config.h"

namespace iris::models::sam2 {

// Mask logits of absent objects.
inline constexpr double kNoObjectScore = -1024.0;

// Backbone output of one frame; the two highest-resolution levels already projected by the
// mask decoder's conv_s0 / conv_s1 (as SAM2Base.forward_image does).
struct BackboneOut {
  std::vector<at::Tensor> backbone_fpn;    // per level [B, C_l, H_l, W_l], highest resolution first
  std::vector<at::Tensor> vision_pos_enc;  // per level [B, d_model, H_l, W_l]
};

// The levels the SAM heads use, flattened sequence-first.
struct FrameFeatures {
  std::vector<at::Tensor> vision_feats;       // per level [H_l·W_l, B, C_l]
  std::vector<at::Tensor> vision_pos_embeds;  // per level [H_l·W_l, B, d_model]
  std::vector<std::array<int64_t, 2>> feat_sizes;
};

struct PointInputs {
  at::Tensor point_coords;  // [B, P, 2] xy in model-input pixels
  at::Tensor point_labels;  // [B, P] int32: 1 positive, 0 negative, 2/3 box corners, -1 padding
};

struct SamHeadsOutput {
  at::Tensor low_res_multimasks;   // [B, M, S/4, S/4]
  at::Tensor high_res_multimasks;  // [B, M, S, S]
  at::Tensor ious;                 // [B, M]
  at::Tensor low_res_masks;        // [B, 1, S/4, S/4] best (highest predicted IoU)
  at::Tensor high_res_masks;       // [B, 1, S, S]
  at::Tensor obj_ptr;              // [B, hidden_dim]
  at::Tensor object_score_logits;  // [B, 1]
};

// What a tracked frame leaves in the memory bank.
struct FrameOutput {
  at::Tensor pred_masks;           // [B, 1, S/4, S/4] low-res logits
  at::Tensor pred_masks_high_res;  // [B, 1, S, S] (not kept in compact outputs)
  at::Tensor obj_ptr;              // [B, hidden_dim]
  at::Tensor object_score_logits;  // [B, 1]
  at::Tensor maskmem_features;     // [B, mem_dim, h, w] or undefined before memory encoding
  at::Tensor maskmem_pos_enc;      // [B, mem_dim, h, w] or undefined
  // All candidate masks and their predicted IoUs (training losses; not kept in compact outputs).
  at::Tensor pred_multimasks_high_res;  // [B, M, S, S]
  at::Tensor ious;                      // [B, M]
};

// One object's memory bank: conditioning frames in the order they were added (that order is
// the order of their memory tokens), other frames by index.
struct ObjectMemory {
  std::vector<std::pair<int64_t, FrameOutput>> cond_frame_outputs;
  std::map<int64_t, FrameOutput> non_cond_frame_outputs;

  const FrameOutput* find_cond(int64_t frame) const;
  FrameOutput* find_cond(int64_t frame);
  void set_cond(int64_t frame, FrameOutput out);  // replaces in place or appends
  bool erase_cond(int64_t frame);
};

class Sam2ModelImpl : public torch::nn::Module {
 public:
  explicit Sam2ModelImpl(const Sam2Options& options);

  // img: [B, 3, S, S] normalised
  BackboneOut forward_image(const at::Tensor& img);
  // The mask decoder's conv_s0 / conv_s1 on the image encoder's two highest-resolution levels
  // (when use_high_res_features_in_sam): forward_image = this after image_encoder. Separate so
  // that a frozen encoder's output can be cached while the mask decoder trains.
  BackboneOut project_high_res_features(BackboneOut encoder_out);
  FrameFeatures prepare_backbone_features(const BackboneOut& out) const;

  // backbone_features: [B, C, S/16, S/16]; mask_inputs: [B, 1, *, *] or undefined.
  SamHeadsOutput forward_sam_heads(const at::Tensor& backbone_features,
                                   const std::optional<PointInputs>& point_inputs,
                                   const at::Tensor& mask_inputs,
                                   const std::vector<at::Tensor>& high_res_features,
                                   bool multimask_output);
  // A binary mask prompt taken as the output (use_mask_input_as_output_without_sam).
  SamHeadsOutput use_mask_as_output(const at::Tensor& backbone_features,
                                    const std::vector<at::Tensor>& high_res_features,
                                    const at::Tensor& mask_inputs);
  // -> [B, C, h, w] features conditioned on the memory bank.
  at::Tensor prepare_memory_conditioned_features(int64_t frame_idx, bool is_init_cond_frame,
                                                 const FrameFeatures& features,
                                                 const ObjectMemory& memory, int64_t num_frames,
                                                 bool track_in_reverse);
  // -> (maskmem_features [B, mem_dim, h, w], maskmem_pos_enc [B, mem_dim, h, w])
  std::pair<at::Tensor, at::Tensor> encode_new_memory(const FrameFeatures& features,
                                                      const at::Tensor& pred_masks_high_res,
                                                      const at::Tensor& object_score_logits,
                                                      bool is_mask_from_pts);
  FrameOutput track_step(int64_t frame_idx, bool is_init_cond_frame, const FrameFeatures& features,
                         const std::optional<PointInputs>& point_inputs,
                         const at::Tensor& mask_inputs, const ObjectMemory& memory,
                         int64_t num_frames, bool track_in_reverse, bool run_mem_encoder,
                         const at::Tensor& prev_sam_mask_logits = {});
  bool use_multimask(bool is_init_cond_frame, const std::optional<PointInputs>& points) const;
  // Keeps only the highest-scoring object per pixel (others clamped to <= -10).
  at::Tensor apply_non_overlapping_constraints(const at::Tensor& pred_masks) const;

  const Sam2Options& config() const { return options_; }
  int64_t hidden_dim() const { return hidden_dim_; }
  int64_t mem_dim() const { return mem_dim_; }
  int64_t image_size() const { return options_.image_size; }

  ImageEncoder image_encoder{nullptr};
  MemoryAttention memory_attention{nullptr};
  MemoryEncoder memory_encoder{nullptr};
  PromptEncoder sam_prompt_encoder{nullptr};
  MaskDecoder sam_mask_decoder{nullptr};
  // obj_ptr_proj is a Linear or a 3-layer Mlp (use_mlp_for_obj_ptr_proj); one of them is set.
  torch::nn::Linear obj_ptr_proj_linear{nullptr};
  Mlp obj_ptr_proj_mlp{nullptr};
  torch::nn::Linear obj_ptr_tpos_proj{nullptr};  // unset = identity
  torch::nn::Conv2d mask_downsample{nullptr};
  at::Tensor maskmem_tpos_enc;      // [num_maskmem, 1, 1, mem_dim]
  at::Tensor no_mem_embed;          // [1, 1, hidden_dim]
  at::Tensor no_mem_pos_enc;        // [1, 1, hidden_dim]
  at::Tensor no_obj_ptr;            // [1, hidden_dim] (pred_obj_scores and obj ptrs)
  at::Tensor no_obj_embed_spatial;  // [1, mem_dim] (SAM2.1)

 private:
  at::Tensor project_obj_ptr(const at::Tensor& token);
  Sam2Options options_;
  int64_t hidden_dim_ = 256;
  int64_t mem_dim_ = 64;
};
TORCH_MODULE(Sam2Model);

// [..., dim]: [sin | cos] of pos / 10000^(2·(i//2)/(dim/2)), as the official get_1d_sine_pe.
at::Tensor get_1d_sine_pe(const at::Tensor& pos, int64_t dim, double temperature = 10000.0);

// Holes (background components of `mask <= 0` with area <= max_area, 8-connected) set to 0.1.
at::Tensor fill_holes_in_mask_scores(const at::Tensor& mask, int64_t max_area);

}  // namespace iris::models::sam2
