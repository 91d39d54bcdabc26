// SAM2 / SAM2.1 model settings, read from the official YAML configs (`model:` tree; `_target_`
// ignored, every other field honoured, unknown fields rejected).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "models/sam2/image_encoder.h"
#include "models/sam2/memory_attention.h"
#include "models/sam2/memory_encoder.h"

namespace YAML {
class Node;
}

namespace iris::models::sam2 {

// SAM2Base's constructor arguments (defaults are the official ones) plus the video predictor's.
struct Sam2Options {
  ImageEncoderOptions image_encoder;
  MemoryAttentionOptions memory_attention;
  MemoryEncoderOptions memory_encoder;
  int64_t num_maskmem = 7;
  int64_t image_size = 512;
  int64_t backbone_stride = 16;
  double sigmoid_scale_for_mem_enc = 1.0;
  double sigmoid_bias_for_mem_enc = 0.0;
  bool binarize_mask_from_pts_for_mem_enc = false;
  bool use_mask_input_as_output_without_sam = false;
  int64_t max_cond_frames_in_attn = -1;
  bool directly_add_no_mem_embed = false;
  bool use_high_res_features_in_sam = false;
  bool multimask_output_in_sam = false;
  int64_t multimask_min_pt_num = 1;
  int64_t multimask_max_pt_num = 1;
  bool multimask_output_for_tracking = false;
  bool use_multimask_token_for_obj_ptr = false;
  bool iou_prediction_use_sigmoid = false;
  int64_t memory_temporal_stride_for_eval = 1;
  bool non_overlap_masks_for_mem_enc = false;
  bool use_obj_ptrs_in_encoder = false;
  int64_t max_obj_ptrs_in_encoder = 16;
  bool add_tpos_enc_to_obj_ptrs = true;
  bool proj_tpos_enc_in_obj_ptrs = false;
  bool use_signed_tpos_enc_to_obj_ptrs = false;
  bool only_obj_ptrs_in_the_past_for_eval = false;
  bool pred_obj_scores = false;
  bool pred_obj_scores_mlp = false;
  bool fixed_no_obj_ptr = false;
  bool soft_no_obj_ptr = false;
  bool use_mlp_for_obj_ptr_proj = false;
  bool no_obj_embed_spatial = false;
  // sam_mask_decoder_extra_args
  bool dynamic_multimask_via_stability = false;
  double dynamic_multimask_stability_delta = 0.05;
  double dynamic_multimask_stability_thresh = 0.98;
  bool compile_image_encoder = false;  // accepted; LibTorch has no torch.compile
  // SAM2VideoPredictor's own arguments
  int64_t fill_hole_area = 0;
  bool non_overlap_masks = false;
  bool clear_non_cond_mem_around_input = false;
  bool add_all_frames_to_correct_as_cond = false;
};

// Parses the `model:` mapping of an official config (or a file whose root is that mapping).
// Throws ConfigError naming `source` and the dotted field.
Sam2Options parse_sam2_config(const YAML::Node& root, const std::string& source);
Sam2Options load_sam2_config(const std::filesystem::path& path);

// What the official build_sam2 / build_sam2_video_predictor add with apply_postprocessing=True:
// dynamic multimask via stability (0.05 / 0.98); for video also binarised click masks in the
// memory encoder and hole filling up to 8 pixels.
void apply_official_postprocessing(Sam2Options& options, bool video);

// The settings of an official release without reading its YAML: size "tiny", "small",
// "base_plus" or "large" (also t, s, b+, l); version "2.1" or "2". Throws ConfigError otherwise.
Sam2Options official_sam2_options(const std::string& size, const std::string& version = "2.1");

// The memory width (memory encoder out_dim, or d_model when it does not project).
int64_t memory_dim(const Sam2Options& options);

}  // namespace iris::models::sam2
