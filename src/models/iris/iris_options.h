// Sizes of the IRIS network (2D or 3D; tiny to paper size by config).
#pragma once

#include <cstdint>

namespace iris::models {

struct IrisOptions {
  int64_t spatial_dims = 2;    // 2: slices [B, C, H, W]; 3: volumes [B, C, D, H, W]
  int64_t in_channels = 1;
  int64_t base_channels = 16;  // channels at full resolution; doubled at each stage
  int64_t stages = 4;          // stride-2 downsamplings; inputs must be divisible by 2^stages
  int64_t query_tokens = 10;   // m contextual tokens per class
  int64_t heads = 8;
  int64_t decoder_layers = 2;  // bidirectional attention layers
  bool deep_supervision = false;

  int64_t channels(int64_t level) const { return base_channels << level; }
  int64_t feature_channels() const { return channels(stages); }
  int64_t tokens_per_class() const { return query_tokens + 1; }
};

}  // namespace iris::models
