// Reference image + mask -> task embedding per class (foreground + contextual tokens).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "models/iris/layers.h"
#include "models/iris/iris_options.h"

namespace iris::models {

// Foreground embedding: mean of the upsampled features over the mask, computed at feature
// resolution. Upsampling U is linear, so sum_x U(F)(x)·y(x) = sum_z F(z)·(Uᵀy)(z): pooling
// against the adjoint-downsampled mask is exactly pooling the upsampled features, without a
// full-resolution C-channel tensor per class.
// features: [B, C, *s], masks: [B, K, *S] in [0, 1] -> [B, K, C]
at::Tensor foreground_pool(const at::Tensor& features, const at::Tensor& masks);
// The direct formula (materialises [B, K, C, *S]); for tests.
at::Tensor foreground_pool_naive(const at::Tensor& features, const at::Tensor& masks);

class TaskEncoderImpl : public torch::nn::Module {
 public:
  explicit TaskEncoderImpl(const IrisOptions& options);
  // features: [B, C, *s] (deepest level of the reference), masks: [B, K, *S], prior_frequencies:
  // [d, P/2] (undefined when options.prior_features == 0), prior_coords: [B, N, d] coordinates of
  // the mask's voxels for the prior (undefined: the grid's)
  // -> task embeddings [B, K, tokens_per_class, C]: row 0 foreground, rows 1..m context, then the
  // pooled Fourier features of the mask (P values, zero-padded to whole rows)
  at::Tensor forward(const at::Tensor& features, const at::Tensor& masks,
                     const at::Tensor& prior_frequencies = {}, const at::Tensor& prior_coords = {});
  IrisOptions options;
  Conv mask_fuse{nullptr};  // concat(features, mask at feature resolution) -> C
  at::Tensor query_tokens;  // [1, m, C]
  Attention cross_attn{nullptr}, self_attn{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(TaskEncoder);

}  // namespace iris::models
