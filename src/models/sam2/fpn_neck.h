// SAM2's FPN neck: 1x1 lateral convs to d_model, top-down fusion on selected levels, and a sine
// position encoding per level.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/sam2/common.h"

namespace iris::models::sam2 {

struct FpnNeckOptions {
  PositionEmbeddingSineOptions position_encoding;
  int64_t d_model = 256;
  std::vector<int64_t> backbone_channel_list;  // lowest resolution first, e.g. {768, 384, 192, 96}
  int64_t kernel_size = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  std::string fpn_interp_model = "bilinear";  // "nearest" | "bilinear" | "bicubic" ...
  std::string fuse_type = "sum";              // "sum" | "avg"
  std::vector<int64_t> fpn_top_down_levels;   // empty = all levels
};

// Keys: convs.{i}.conv.{weight,bias}; convs.0 is the lateral of the lowest-resolution input.
class FpnNeckImpl : public torch::nn::Module {
 public:
  explicit FpnNeckImpl(const FpnNeckOptions& options);
  // xs: trunk outputs, highest resolution first -> (features, pos), highest resolution first:
  // features [B, d_model, H_i, W_i], pos [B, d_model, H_i, W_i].
  std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> forward(
      const std::vector<at::Tensor>& xs);

  FpnNeckOptions options;
  torch::nn::ModuleList convs{nullptr};
  PositionEmbeddingSine position_encoding{nullptr};
};
TORCH_MODULE(FpnNeck);

}  // namespace iris::models::sam2
