#include "models/sam2/mask_decoder.h"

namespace iris::models::sam2 {

namespace {

// Object score reported when the decoder has no object-score head: sigmoid(10) ≈ 1, "present".
constexpr double kObjectPresentLogit = 10.0;

}  // namespace

MaskDecoderImpl::MaskDecoderImpl(const MaskDecoderOptions& o) : options(o) {
  const int64_t dim = o.transformer_dim;
  TORCH_CHECK(dim > 0 && dim % 8 == 0, "MaskDecoder: transformer_dim must be a multiple of 8, got ",
              dim);
  TORCH_CHECK(o.transformer.embedding_dim == dim, "MaskDecoder: transformer.embedding_dim ",
              o.transformer.embedding_dim, " differs from transformer_dim ", dim);
  TORCH_CHECK(o.num_multimask_outputs >= 1, "MaskDecoder: num_multimask_outputs must be positive");
  num_mask_tokens_ = o.num_multimask_outputs + 1;

  transformer_ = register_module("transformer", TwoWayTransformer(o.transformer));
  iou_token_ = register_module("iou_token", torch::nn::Embedding(1, dim));
  mask_tokens_ = register_module("mask_tokens", torch::nn::Embedding(num_mask_tokens_, dim));
  if (o.pred_obj_scores) {
    obj_score_token_ = register_module("obj_score_token", torch::nn::Embedding(1, dim));
  }

  using torch::nn::ConvTranspose2dOptions;
  upscale_conv1_ = torch::nn::ConvTranspose2d(ConvTranspose2dOptions(dim, dim / 4, 2).stride(2));
  upscale_norm_ = LayerNorm2d(dim / 4);
  upscale_conv2_ =
      torch::nn::ConvTranspose2d(ConvTranspose2dOptions(dim / 4, dim / 8, 2).stride(2));
  output_upscaling_ = register_module(
      "output_upscaling", torch::nn::Sequential(upscale_conv1_, upscale_norm_, torch::nn::GELU(),
                                                upscale_conv2_, torch::nn::GELU()));
  if (o.use_high_res_features) {
    conv_s0 = register_module("conv_s0", torch::nn::Conv2d(dim, dim / 8, 1));
    conv_s1 = register_module("conv_s1", torch::nn::Conv2d(dim, dim / 4, 1));
  }

  output_hypernetworks_mlps_ =
      register_module("output_hypernetworks_mlps", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_mask_tokens_; ++i) {
    output_hypernetworks_mlps_->push_back(Mlp(MlpOptions{dim, dim, dim / 8, 3}));
  }
  iou_prediction_head_ =
      register_module("iou_prediction_head",
                      Mlp(MlpOptions{dim, o.iou_head_hidden_dim, num_mask_tokens_, o.iou_head_depth,
                                     Activation::kRelu, o.iou_prediction_use_sigmoid}));
  if (o.pred_obj_scores) {
    if (o.pred_obj_scores_mlp) {
      obj_score_mlp_ = register_module("pred_obj_score_head", Mlp(MlpOptions{dim, dim, 1, 3}));
    } else {
      obj_score_linear_ = register_module("pred_obj_score_head", torch::nn::Linear(dim, 1));
    }
  }
}

MaskDecoderImpl::Predictions MaskDecoderImpl::predict_masks(
    const at::Tensor& image_embeddings, const at::Tensor& image_pe,
    const at::Tensor& sparse_prompt_embeddings, const at::Tensor& dense_prompt_embeddings,
    bool repeat_image, const std::vector<at::Tensor>& high_res_features) {
  using torch::indexing::Slice;
  const int64_t batch = sparse_prompt_embeddings.size(0);

  // Token order: [obj_score,] iou, mask tokens, then the prompts.
  std::vector<at::Tensor> output_tokens;
  if (options.pred_obj_scores) output_tokens.push_back(obj_score_token_->weight);
  output_tokens.push_back(iou_token_->weight);
  output_tokens.push_back(mask_tokens_->weight);
  const int64_t s = options.pred_obj_scores ? 1 : 0;
  auto tokens = torch::cat(output_tokens, 0).unsqueeze(0).expand({batch, -1, -1});
  tokens = torch::cat({tokens, sparse_prompt_embeddings}, 1);  // [B, T, C]

  auto src = repeat_image ? torch::repeat_interleave(image_embeddings, batch, 0) : image_embeddings;
  src = src + dense_prompt_embeddings;
  const auto pos_src = torch::repeat_interleave(image_pe, batch, 0);
  const int64_t b = src.size(0), c = src.size(1), h = src.size(2), w = src.size(3);

  auto [hs, keys] = transformer_(src, pos_src, tokens);
  const auto iou_token_out = hs.select(1, s);  // [B, C]
  const auto mask_tokens_out = hs.index({Slice(), Slice(s + 1, s + 1 + num_mask_tokens_)});

  src = keys.transpose(1, 2).reshape({b, c, h, w});
  at::Tensor upscaled;
  if (!options.use_high_res_features) {
    upscaled = output_upscaling_->forward(src);
  } else {
    const auto& feat_s0 = high_res_features[0];
    const auto& feat_s1 = high_res_features[1];
    upscaled = gelu_exact(upscale_norm_(upscale_conv1_(src) + feat_s1));
    upscaled = gelu_exact(upscale_conv2_(upscaled) + feat_s0);
  }

  std::vector<at::Tensor> hyper_in;
  hyper_in.reserve(num_mask_tokens_);
  for (int64_t i = 0; i < num_mask_tokens_; ++i) {
    hyper_in.push_back(
        output_hypernetworks_mlps_[i]->as<MlpImpl>()->forward(mask_tokens_out.select(1, i)));
  }
  const int64_t uc = upscaled.size(1), uh = upscaled.size(2), uw = upscaled.size(3);
  const auto masks = torch::matmul(torch::stack(hyper_in, 1), upscaled.reshape({b, uc, uh * uw}))
                         .view({b, -1, uh, uw});

  const auto iou_pred = iou_prediction_head_(iou_token_out);
  at::Tensor object_score_logits;
  if (obj_score_mlp_) {
    object_score_logits = obj_score_mlp_(hs.select(1, 0));
  } else if (obj_score_linear_) {
    object_score_logits = obj_score_linear_(hs.select(1, 0));
  } else {
    object_score_logits =
        torch::full({iou_pred.size(0), 1}, kObjectPresentLogit, iou_pred.options());
  }
  return {masks, iou_pred, mask_tokens_out, object_score_logits};
}

at::Tensor MaskDecoderImpl::stability_scores(const at::Tensor& mask_logits) const {
  const auto flat = mask_logits.flatten(-2);
  const double delta = options.dynamic_multimask_stability_delta;
  const auto area_i = (flat > delta).sum(-1).to(torch::kFloat32);
  const auto area_u = (flat > -delta).sum(-1).to(torch::kFloat32);
  return torch::where(area_u > 0, area_i / area_u, torch::ones_like(area_u));
}

std::pair<at::Tensor, at::Tensor> MaskDecoderImpl::dynamic_multimask_via_stability(
    const at::Tensor& masks, const at::Tensor& iou_pred) {
  using torch::indexing::Slice;
  const auto multimask_logits = masks.index({Slice(), Slice(1)});
  const auto multimask_iou = iou_pred.index({Slice(), Slice(1)});
  const auto best = torch::argmax(multimask_iou, -1);  // [B]
  const auto batch_inds = torch::arange(multimask_iou.size(0), best.options());
  const auto best_logits = multimask_logits.index({batch_inds, best}).unsqueeze(1);
  const auto best_iou = multimask_iou.index({batch_inds, best}).unsqueeze(1);

  const auto single_logits = masks.index({Slice(), Slice(0, 1)});
  const auto single_iou = iou_pred.index({Slice(), Slice(0, 1)});
  const auto is_stable =
      stability_scores(single_logits) >= options.dynamic_multimask_stability_thresh;  // [B, 1]
  return {torch::where(is_stable.unsqueeze(-1).unsqueeze(-1), single_logits, best_logits),
          torch::where(is_stable, single_iou, best_iou)};
}

MaskDecoderOutput MaskDecoderImpl::forward(const at::Tensor& image_embeddings,
                                           const at::Tensor& image_pe,
                                           const at::Tensor& sparse_prompt_embeddings,
                                           const at::Tensor& dense_prompt_embeddings,
                                           bool multimask_output, bool repeat_image,
                                           const std::vector<at::Tensor>& high_res_features) {
  using torch::indexing::Slice;
  const int64_t c = options.transformer_dim;
  TORCH_CHECK(sparse_prompt_embeddings.dim() == 3 && sparse_prompt_embeddings.size(2) == c,
              "MaskDecoder: sparse_prompt_embeddings must be [B, N, ", c, "], got ",
              sparse_prompt_embeddings.sizes());
  const int64_t batch = sparse_prompt_embeddings.size(0);
  TORCH_CHECK(image_embeddings.dim() == 4 && image_embeddings.size(1) == c,
              "MaskDecoder: image_embeddings must be [B, ", c, ", h, w], got ",
              image_embeddings.sizes());
  TORCH_CHECK(repeat_image ? image_embeddings.size(0) == 1 : image_embeddings.size(0) == batch,
              "MaskDecoder: image_embeddings batch ", image_embeddings.size(0), " must be ",
              repeat_image ? "1 with repeat_image" : "the prompt batch", " (", batch, ")");
  const int64_t h = image_embeddings.size(2), w = image_embeddings.size(3);
  TORCH_CHECK(image_pe.dim() == 4 && image_pe.size(0) == 1 &&
                  image_pe.sizes().slice(1) == image_embeddings.sizes().slice(1),
              "MaskDecoder: image_pe must be [1, ", c, ", ", h, ", ", w, "] (get_dense_pe), got ",
              image_pe.sizes());
  TORCH_CHECK(
      dense_prompt_embeddings.dim() == 4 &&
          (dense_prompt_embeddings.size(0) == batch || dense_prompt_embeddings.size(0) == 1) &&
          dense_prompt_embeddings.sizes().slice(1) == image_embeddings.sizes().slice(1),
      "MaskDecoder: dense_prompt_embeddings must be [", batch, ", ", c, ", ", h, ", ", w, "], got ",
      dense_prompt_embeddings.sizes());
  if (options.use_high_res_features) {
    TORCH_CHECK(high_res_features.size() == 2,
                "MaskDecoder: use_high_res_features needs {feat_s0, feat_s1}, got ",
                high_res_features.size(), " tensors");
    // Batch 1 broadcasts over the prompts (the image predictor's batched prompts).
    const auto& f0 = high_res_features[0];
    const auto& f1 = high_res_features[1];
    const std::vector<int64_t> s0{c / 8, 4 * h, 4 * w}, s1{c / 4, 2 * h, 2 * w};
    TORCH_CHECK(f0.dim() == 4 && f1.dim() == 4 && f0.sizes().slice(1) == s0 &&
                    f1.sizes().slice(1) == s1 && (f0.size(0) == batch || f0.size(0) == 1) &&
                    (f1.size(0) == batch || f1.size(0) == 1),
                "MaskDecoder: high-res features must be [", batch, ", ", c / 8, ", ", 4 * h, ", ",
                4 * w, "] and [", batch, ", ", c / 4, ", ", 2 * h, ", ", 2 * w, "], got ",
                f0.sizes(), " and ", f1.sizes());
  } else {
    TORCH_CHECK(high_res_features.empty(),
                "MaskDecoder: high-res features given but use_high_res_features is off");
  }

  auto p = predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                         dense_prompt_embeddings, repeat_image, high_res_features);

  MaskDecoderOutput out;
  if (multimask_output) {
    out.masks = p.masks.index({Slice(), Slice(1)});
    out.iou_pred = p.iou_pred.index({Slice(), Slice(1)});
  } else if (options.dynamic_multimask_via_stability && !is_training()) {
    std::tie(out.masks, out.iou_pred) = dynamic_multimask_via_stability(p.masks, p.iou_pred);
  } else {
    out.masks = p.masks.index({Slice(), Slice(0, 1)});
    out.iou_pred = p.iou_pred.index({Slice(), Slice(0, 1)});
  }
  // Single-mask decoding always points from token 0: training tracks after several clicks, so
  // the memory has only ever seen that token.
  out.sam_tokens_out = multimask_output && options.use_multimask_token_for_obj_ptr
                           ? p.mask_tokens_out.index({Slice(), Slice(1)})
                           : p.mask_tokens_out.index({Slice(), Slice(0, 1)});
  out.object_score_logits = p.object_score_logits;
  return out;
}

}  // namespace iris::models::sam2
