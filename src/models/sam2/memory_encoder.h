// SAM2's memory encoder: a predicted mask is downsampled to the image-embedding grid, fused with
// the frame's features by ConvNeXt blocks, and projected to the memory width.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "models/sam2/common.h"

namespace iris::models::sam2 {

struct MaskDownSamplerOptions {
  int64_t embed_dim = 256;
  int64_t kernel_size = 4;
  int64_t stride = 4;
  int64_t padding = 0;
  int64_t total_stride = 16;
};

// Keys: encoder.{3i} conv, encoder.{3i+1} LayerNorm2d for each stride step (GELU modules sit at
// 3i+2 and hold nothing), then the final 1x1 conv at encoder.{3n}.
class MaskDownSamplerImpl : public torch::nn::Module {
 public:
  explicit MaskDownSamplerImpl(const MaskDownSamplerOptions& options);
  // [B, 1, H, W] -> [B, embed_dim, H / total_stride, W / total_stride]
  at::Tensor forward(const at::Tensor& x);

  MaskDownSamplerOptions options;
  torch::nn::Sequential encoder{nullptr};
};
TORCH_MODULE(MaskDownSampler);

struct CXBlockOptions {
  int64_t dim = 256;
  int64_t kernel_size = 7;
  int64_t padding = 3;
  double drop_path = 0.0;
  double layer_scale_init_value = 1e-6;
  bool use_dwconv = true;
};

// ConvNeXt block: x + gamma * pwconv2(gelu(pwconv1(norm(dwconv(x))))), the pointwise layers as
// linears over channels-last. Keys: dwconv, norm, pwconv1, pwconv2, gamma (when
// layer_scale_init_value > 0).
class CXBlockImpl : public torch::nn::Module {
 public:
  explicit CXBlockImpl(const CXBlockOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [B, dim, H, W] -> same

  CXBlockOptions options;
  torch::nn::Conv2d dwconv{nullptr};
  LayerNorm2d norm{nullptr};
  torch::nn::Linear pwconv1{nullptr}, pwconv2{nullptr};
  at::Tensor gamma;  // [dim], undefined without layer scale
};
TORCH_MODULE(CXBlock);

struct FuserOptions {
  CXBlockOptions layer;
  int64_t num_layers = 2;
  int64_t dim = 0;                // only with input_projection
  bool input_projection = false;  // 1x1 conv `proj` before the blocks
};

// Keys: proj (with input_projection), layers.{i}.
class FuserImpl : public torch::nn::Module {
 public:
  explicit FuserImpl(const FuserOptions& options);
  at::Tensor forward(at::Tensor x);  // [B, C, H, W] -> same

  FuserOptions options;
  torch::nn::Conv2d proj{nullptr};  // null without input_projection
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(Fuser);

struct MemoryEncoderOptions {
  int64_t out_dim = 64;
  MaskDownSamplerOptions mask_downsampler;
  FuserOptions fuser;
  PositionEmbeddingSineOptions position_encoding{64};
  int64_t in_dim = 256;
};

struct MemoryEncoderOutput {
  at::Tensor vision_features;  // [B, out_dim, h, w]
  at::Tensor vision_pos_enc;   // [B, out_dim, h, w]
};

// Keys: mask_downsampler.encoder.{conv/LN indices}, pix_feat_proj, fuser.layers.{i}.{dwconv,norm,
// pwconv1,pwconv2,gamma} (fuser.proj with input_projection), out_proj (when out_dim != in_dim).
class MemoryEncoderImpl : public torch::nn::Module {
 public:
  explicit MemoryEncoderImpl(const MemoryEncoderOptions& options);
  // pix_feat: [B, in_dim, h, w]; masks: [B, 1, 16h, 16w] logits (sigmoid applied unless
  // skip_mask_sigmoid, when they are already in the range the caller wants).
  MemoryEncoderOutput forward(const at::Tensor& pix_feat, const at::Tensor& masks,
                              bool skip_mask_sigmoid = false);

  MemoryEncoderOptions options;
  MaskDownSampler mask_downsampler{nullptr};
  torch::nn::Conv2d pix_feat_proj{nullptr};
  Fuser fuser{nullptr};
  PositionEmbeddingSine position_encoding{nullptr};
  torch::nn::Conv2d out_proj{nullptr};  // null when out_dim == in_dim
};
TORCH_MODULE(MemoryEncoder);

}  // namespace iris::models::sam2
