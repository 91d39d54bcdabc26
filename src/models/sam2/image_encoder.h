// SAM2's image encoder: Hiera trunk + FPN neck, dropping the `scalp` lowest-resolution levels.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/sam2/fpn_neck.h"
#include "models/sam2/hiera.h"

namespace iris::models::sam2 {

struct ImageEncoderOptions {
  HieraOptions trunk;
  FpnNeckOptions neck;
  int64_t scalp = 0;
};

struct ImageEncoderOutput {
  at::Tensor vision_features;              // [B, d_model, H/16, W/16] = backbone_fpn.back()
  std::vector<at::Tensor> vision_pos_enc;  // per level, highest resolution first
  std::vector<at::Tensor> backbone_fpn;    // per level [B, d_model, H/4·2^-i, W/4·2^-i]
};

// Keys: trunk.*, neck.*.
class ImageEncoderImpl : public torch::nn::Module {
 public:
  explicit ImageEncoderImpl(const ImageEncoderOptions& options);
  // sample: [B, 3, H, W] normalised RGB
  ImageEncoderOutput forward(const at::Tensor& sample);

  ImageEncoderOptions options;
  Hiera trunk{nullptr};
  FpnNeck neck{nullptr};
};
TORCH_MODULE(ImageEncoder);

// The image encoder of the official SAM2.1 configs: size "tiny", "small", "base_plus" or "large"
// (also "t", "s", "b+", "l"). Throws ConfigError for any other name.
ImageEncoderOptions official_image_encoder_options(const std::string& size);

}  // namespace iris::models::sam2
