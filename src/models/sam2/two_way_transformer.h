// SAM's two-way transformer: prompt tokens and image tokens attend to each other.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>

namespace iris::models::sam2 {

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
};
TORCH_MODULE(TwoWayTransformer);

}  // namespace iris::models::sam2
