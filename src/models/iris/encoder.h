// Residual UNet-style encoder shared by reference and query images.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "models/iris/layers.h"
#include "models/iris/iris_options.h"

namespace iris::models {

class IrisEncoderImpl : public torch::nn::Module {
 public:
  explicit IrisEncoderImpl(const IrisOptions& options);
  // x: [B, in, *S] -> features per level: level l is [B, base·2^l, *S/2^l], l = 0..stages; the
  // deepest level carries the projected sine position encoding when options.position_encoding.
  std::vector<at::Tensor> forward(const at::Tensor& x);
  ResidualBlock stem{nullptr};
  torch::nn::ModuleList down{nullptr};
  torch::nn::Linear position_proj{nullptr};
};
TORCH_MODULE(IrisEncoder);

}  // namespace iris::models
