// SAM2's mask decoder: output tokens (object score, IoU, mask tokens) and prompt tokens run
// through the two-way transformer with the image embedding; an upscaling path with optional
// high-resolution features and per-token hypernetworks produce the mask logits.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "models/sam2/common.h"
#include "models/sam2/two_way_transformer.h"

namespace iris::models::sam2 {

struct MaskDecoderOptions {
  int64_t transformer_dim = 256;
  TwoWayTransformerOptions transformer;
  int64_t num_multimask_outputs = 3;
  int64_t iou_head_depth = 3;
  int64_t iou_head_hidden_dim = 256;
  bool use_high_res_features = false;
  bool iou_prediction_use_sigmoid = false;
  bool dynamic_multimask_via_stability = false;
  double dynamic_multimask_stability_delta = 0.05;
  double dynamic_multimask_stability_thresh = 0.98;
  bool pred_obj_scores = false;
  bool pred_obj_scores_mlp = false;
  bool use_multimask_token_for_obj_ptr = false;
};

struct MaskDecoderOutput {
  at::Tensor masks;                // [B, M, 4h, 4w] logits; M = 3 with multimask, else 1
  at::Tensor iou_pred;             // [B, M]
  at::Tensor sam_tokens_out;       // [B, 1 or 3, C]: the token(s) the object pointer comes from
  at::Tensor object_score_logits;  // [B, 1] (10.0 everywhere when !pred_obj_scores)
};

// Keys: transformer.*, iou_token, mask_tokens, obj_score_token, output_upscaling.{0,1,3},
// conv_s0, conv_s1 (with high-res features), output_hypernetworks_mlps.{i}.layers.{j},
// iou_prediction_head.layers.{j}, pred_obj_score_head(.layers.{j}).
class MaskDecoderImpl : public torch::nn::Module {
 public:
  explicit MaskDecoderImpl(const MaskDecoderOptions& options);
  // image_embeddings: [B, C, h, w] ([1, C, h, w] with repeat_image, repeated per prompt);
  // image_pe: [1, C, h, w]; sparse: [B, N, C]; dense: [B, C, h, w];
  // high_res_features: empty, or {feat_s0 [B, C/8, 4h, 4w], feat_s1 [B, C/4, 2h, 2w]} already
  // projected by conv_s0 / conv_s1.
  MaskDecoderOutput forward(const at::Tensor& image_embeddings, const at::Tensor& image_pe,
                            const at::Tensor& sparse_prompt_embeddings,
                            const at::Tensor& dense_prompt_embeddings, bool multimask_output,
                            bool repeat_image,
                            const std::vector<at::Tensor>& high_res_features = {});

  MaskDecoderOptions options;
  // 1x1 projections SAM2Base applies to the two highest-resolution FPN levels once per frame.
  torch::nn::Conv2d conv_s0{nullptr}, conv_s1{nullptr};

 private:
  struct Predictions {
    at::Tensor masks;                // [B, num_mask_tokens, 4h, 4w]
    at::Tensor iou_pred;             // [B, num_mask_tokens]
    at::Tensor mask_tokens_out;      // [B, num_mask_tokens, C]
    at::Tensor object_score_logits;  // [B, 1]
  };
  Predictions predict_masks(const at::Tensor& image_embeddings, const at::Tensor& image_pe,
                            const at::Tensor& sparse_prompt_embeddings,
                            const at::Tensor& dense_prompt_embeddings, bool repeat_image,
                            const std::vector<at::Tensor>& high_res_features);
  // Token 0's mask if stable under +-delta thresholds, else the best-IoU multimask output:
  // ([B, num_mask_tokens, H, W], [B, num_mask_tokens]) -> ([B, 1, H, W], [B, 1]).
  std::pair<at::Tensor, at::Tensor> dynamic_multimask_via_stability(const at::Tensor& masks,
                                                                    const at::Tensor& iou_pred);
  at::Tensor stability_scores(const at::Tensor& mask_logits) const;  // [B, M, H, W] -> [B, M]

  int64_t num_mask_tokens_ = 0;
  TwoWayTransformer transformer_{nullptr};
  torch::nn::Embedding iou_token_{nullptr}, mask_tokens_{nullptr}, obj_score_token_{nullptr};
  // ConvTranspose 2x2/2, LayerNorm2d, GELU, ConvTranspose 2x2/2, GELU: keys 0, 1, 3.
  torch::nn::Sequential output_upscaling_{nullptr};
  torch::nn::ConvTranspose2d upscale_conv1_{nullptr}, upscale_conv2_{nullptr};
  LayerNorm2d upscale_norm_{nullptr};
  torch::nn::ModuleList output_hypernetworks_mlps_{nullptr};  // Mlp x num_mask_tokens
  Mlp iou_prediction_head_{nullptr};
  // pred_obj_score_head is a Linear, or an Mlp with pred_obj_scores_mlp.
  torch::nn::Linear obj_score_linear_{nullptr};
  Mlp obj_score_mlp_{nullptr};
};
TORCH_MODULE(MaskDecoder);

}  // namespace iris::models::sam2
