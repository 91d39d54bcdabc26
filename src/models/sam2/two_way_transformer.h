// SAM's two-way transformer: prompt tokens and image tokens attend to each other.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>

#include "models/sam2/attention.h"
#include "models/sam2/common.h"

namespace iris::models::sam2 {

struct TwoWayAttentionBlockOptions {
  int64_t embedding_dim = 256;
  int64_t num_heads = 8;
  int64_t mlp_dim = 2048;
  int64_t attention_downsample_rate = 2;
  // The first block: token self-attention without position encoding and without residual.
  bool skip_first_layer_pe = false;
};

// Token self-attention, token->image cross-attention, token MLP, image->token cross-attention,
// each followed by a LayerNorm (eps 1e-5). Keys: self_attn, norm1, cross_attn_token_to_image,
// norm2, mlp.layers.{0,1}, norm3, norm4, cross_attn_image_to_token.
class TwoWayAttentionBlockImpl : public torch::nn::Module {
 public:
  explicit TwoWayAttentionBlockImpl(const TwoWayAttentionBlockOptions& options);
  // queries, query_pe: [B, N, C]; keys, key_pe: [B, h·w, C] -> (queries, keys), same shapes
  std::pair<at::Tensor, at::Tensor> forward(at::Tensor queries, at::Tensor keys,
                                            const at::Tensor& query_pe, const at::Tensor& key_pe);

  TwoWayAttentionBlockOptions options;

 private:
  Attention self_attn_{nullptr}, cross_attn_token_to_image_{nullptr},
      cross_attn_image_to_token_{nullptr};
  Mlp mlp_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr}, norm4_{nullptr};
};
TORCH_MODULE(TwoWayAttentionBlock);

struct TwoWayTransformerOptions {
  int64_t depth = 2;
  int64_t embedding_dim = 256;
  int64_t num_heads = 8;
  int64_t mlp_dim = 2048;
  int64_t attention_downsample_rate = 2;
};

// Keys: layers.{i}.{self_attn,norm1,cross_attn_token_to_image,norm2,mlp.layers.{0,1},norm3,
// norm4,cross_attn_image_to_token}, final_attn_token_to_image, norm_final_attn.
class TwoWayTransformerImpl : public torch::nn::Module {
 public:
  explicit TwoWayTransformerImpl(const TwoWayTransformerOptions& options);
  // image_embedding, image_pe: [B, C, h, w]; point_embedding: [B, N, C]
  // -> (queries [B, N, C], keys [B, h·w, C])
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& image_embedding,
                                            const at::Tensor& image_pe,
                                            const at::Tensor& point_embedding);

  TwoWayTransformerOptions options;

 private:
  torch::nn::ModuleList layers_{nullptr};  // TwoWayAttentionBlock x depth
  Attention final_attn_token_to_image_{nullptr};
  torch::nn::LayerNorm norm_final_attn_{nullptr};
};
TORCH_MODULE(TwoWayTransformer);

}  // namespace iris::models::sam2
