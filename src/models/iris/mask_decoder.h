// Joint multi-class decoding: task tokens of all classes and query features attend to each other
// in one pass, then an upsampling path with skips; logits are pixel features · class embeddings.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "models/iris/layers.h"
#include "models/iris/iris_options.h"

namespace iris::models {

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(int64_t dim, int64_t heads);
  // tokens: [B, T, C], features: [B, N, C] -> both updated
  void forward(at::Tensor& tokens, at::Tensor& features);
  Attention token_to_image{nullptr}, image_to_token{nullptr}, token_self{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr}, norm4{nullptr}, norm5{nullptr};
  Mlp token_mlp{nullptr}, image_mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct IrisOutput {
  at::Tensor logits;               // [B, K, *S]
  std::vector<at::Tensor> auxiliary;  // deep supervision: [B, K, *S/2^l], l = 1..stages-1
};

class MaskDecoderImpl : public torch::nn::Module {
 public:
  explicit MaskDecoderImpl(const IrisOptions& options);
  // levels: encoder features of the query; task: [B, K, tokens_per_class, C]; prior_frequencies:
  // [d, P/2] when options.prior_features > 0; prior_coords: [B, N, d] coordinates of the query's
  // voxels for the prior (undefined: the grid's)
  IrisOutput forward(const std::vector<at::Tensor>& levels, const at::Tensor& task,
                     const at::Tensor& prior_frequencies = {}, const at::Tensor& prior_coords = {});
  IrisOptions options;
  torch::nn::Embedding token_type{nullptr};  // foreground / context slot j, shared by classes
  torch::nn::ModuleList layers{nullptr};
  torch::nn::ModuleList up{nullptr};      // transposed convs, deepest first
  torch::nn::ModuleList fuse{nullptr};    // residual blocks after concatenating the skip
  Mlp class_embed{nullptr};               // class summary -> pixel embedding (base channels)
  torch::nn::ModuleList aux_embed{nullptr};
  torch::nn::ModuleList film{nullptr};  // class_film: summary -> (scale, shift), deepest first
  // Reference prior: logits = gate · appearance + scale · φ(x)ᵀ W p_k + bias.
  at::Tensor prior_mix, prior_scale, prior_bias, appearance_gate;
  // options.prior_frame: [d] how far the prior's coordinates move to each image's foreground frame.
  at::Tensor prior_frame_mix;
};
TORCH_MODULE(MaskDecoder);

}  // namespace iris::models
