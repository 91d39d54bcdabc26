// Hiera trunk of SAM2's image encoder: patch embedding, windowed multi-scale blocks with query
// pooling between stages, windowed absolute position embedding.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <vector>

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

  HieraOptions options;
  // Submodules and parameters named as the checkpoint keys (see above).
};
TORCH_MODULE(Hiera);

}  // namespace iris::models::sam2
