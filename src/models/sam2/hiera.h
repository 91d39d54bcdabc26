// Hiera trunk of SAM2's image encoder: patch embedding, windowed multi-scale blocks with query
// pooling between stages, windowed absolute position embedding.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <vector>

#include "models/sam2/common.h"

namespace iris::models::sam2 {

// Defaults are the official Hiera constructor's (the base_plus values).
struct HieraOptions {
  int64_t embed_dim = 96;
  int64_t num_heads = 1;
  double drop_path_rate = 0.0;  // stochastic depth, training only
  int64_t q_pool = 3;
  std::array<int64_t, 2> q_stride{2, 2};
  std::vector<int64_t> stages{2, 3, 16, 3};
  double dim_mul = 2.0;
  double head_mul = 2.0;
  std::array<int64_t, 2> window_pos_embed_bkg_spatial_size{14, 14};
  std::vector<int64_t> window_spec{8, 4, 14, 7};
  std::vector<int64_t> global_att_blocks{12, 16, 20};
  bool return_interm_layers = true;
};

// Conv2d(3, E, k7, s4, p3), output channels-last. Keys: proj.{weight,bias}.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  explicit PatchEmbedImpl(int64_t embed_dim);
  at::Tensor forward(const at::Tensor& x);  // [B, 3, H, W] -> [B, H/4, W/4, E]
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

struct MultiScaleAttentionOptions {
  int64_t dim = 96;
  int64_t dim_out = 96;
  int64_t num_heads = 1;
  std::array<int64_t, 2> q_stride{0, 0};  // {0, 0} = no query pooling
};

// Multi-head self-attention over the tokens of each window, optionally max-pooling the queries
// (so the output grid shrinks by q_stride). Keys: qkv, proj.
class MultiScaleAttentionImpl : public torch::nn::Module {
 public:
  explicit MultiScaleAttentionImpl(const MultiScaleAttentionOptions& options);
  // x: [N, h, w, dim] (N = batch · windows) -> [N, h / sh, w / sw, dim_out]
  at::Tensor forward(const at::Tensor& x);

  MultiScaleAttentionOptions options;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(MultiScaleAttention);

struct MultiScaleBlockOptions {
  int64_t dim = 96;
  int64_t dim_out = 96;
  int64_t num_heads = 1;
  double mlp_ratio = 4.0;
  double drop_path = 0.0;
  std::array<int64_t, 2> q_stride{0, 0};  // {0, 0} = no pooling (not a stage entry)
  int64_t window_size = 0;                // 0 = global attention
};

// Pre-norm transformer block, channels-last. With dim != dim_out the shortcut is proj(norm1(x)),
// pooled like the queries. Keys: norm1, attn.{qkv,proj}, norm2, mlp.layers.{0,1}, proj (only
// when dim != dim_out).
class MultiScaleBlockImpl : public torch::nn::Module {
 public:
  explicit MultiScaleBlockImpl(const MultiScaleBlockOptions& options);
  // x: [B, H, W, dim] -> [B, H / sh, W / sw, dim_out]
  at::Tensor forward(const at::Tensor& x);

  MultiScaleBlockOptions options;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  MultiScaleAttention attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Linear proj{nullptr};

 private:
  bool pooled() const { return options.q_stride[0] > 0; }
  at::Tensor drop_path(const at::Tensor& x) const;
};
TORCH_MODULE(MultiScaleBlock);

// Keys: patch_embed.proj.{weight,bias}, pos_embed [1, E, bh, bw], pos_embed_window
// [1, E, w0, w0], blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.layers.{0,1},proj}.
class HieraImpl : public torch::nn::Module {
 public:
  explicit HieraImpl(const HieraOptions& options);
  // x: [B, 3, H, W] (H, W multiples of 32) -> one NCHW map per stage end (or only the last when
  // !return_interm_layers): [B, E·2^i, H / (4·2^i), W / (4·2^i)]
  std::vector<at::Tensor> forward(const at::Tensor& x);
  // Channels of the returned maps, lowest resolution first (the neck's backbone_channel_list).
  std::vector<int64_t> channel_list() const;
  // The absolute position embedding for an h x w patch grid: [1, h, w, E] (cached when no
  // gradient is recorded, until the parameters change).
  at::Tensor pos_embed_for(int64_t h, int64_t w);

  HieraOptions options;
  // Submodules and parameters named as the checkpoint keys (see above).
  PatchEmbed patch_embed{nullptr};
  at::Tensor pos_embed, pos_embed_window;
  torch::nn::ModuleList blocks{nullptr};

 private:
  std::vector<int64_t> stage_ends_;  // index of each stage's last block
  // The last pos_embed_for result and what it was computed from.
  at::Tensor cached_pos_;
  int64_t cached_h_ = -1, cached_w_ = -1;
  std::array<int64_t, 2> cached_versions_{-1, -1};
  std::array<const void*, 2> cached_data_{nullptr, nullptr};
};
TORCH_MODULE(Hiera);

}  // namespace iris::models::sam2
