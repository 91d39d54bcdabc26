// Building blocks shared by the SAM2 modules: channel-first LayerNorm, the MLP of the official
// heads, and the sine position encoding of the FPN neck and the memory encoder.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace iris::models::sam2 {

// GELU as the official code uses it (exact erf form).
at::Tensor gelu_exact(const at::Tensor& x);

// Bilinear resize of [B, C, H, W] to [B, C, h, w] with align_corners=false, as every mask resize
// of the official code; antialias for downsizing.
at::Tensor resize_bilinear(const at::Tensor& x, int64_t h, int64_t w, bool antialias = false);

// LayerNorm over the channel dim of [B, C, H, W]. Keys: weight [C], bias [C].
class LayerNorm2dImpl : public torch::nn::Module {
 public:
  explicit LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x);  // [B, C, H, W] -> same
  at::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm2d);

enum class Activation { kRelu, kGelu };

struct MlpOptions {
  int64_t input_dim = 256;
  int64_t hidden_dim = 256;
  int64_t output_dim = 256;
  int64_t num_layers = 3;
  Activation activation = Activation::kRelu;
  bool sigmoid_output = false;
};

// `num_layers` linears with the activation between them. Keys: layers.{i}.weight/bias.
class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const MlpOptions& options);
  at::Tensor forward(at::Tensor x);  // [..., input_dim] -> [..., output_dim]
  MlpOptions options;
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(Mlp);

struct PositionEmbeddingSineOptions {
  int64_t num_pos_feats = 256;  // output channels: half for y, half for x
  double temperature = 10000.0;
  bool normalize = true;
  double scale = 0.0;  // 0 = 2π (the official default when `scale` is null)
};

// Parameter-free 2D sine encoding: channels (pos_y | pos_x), each interleaving sin and cos;
// positions 1..H (1..W), normalised by the last one when `normalize`. Results are cached per
// (H, W, device).
class PositionEmbeddingSineImpl : public torch::nn::Module {
 public:
  explicit PositionEmbeddingSineImpl(const PositionEmbeddingSineOptions& options);
  // -> [B, num_pos_feats, H, W] float32 on `like`'s device, for `like` = [B, C, H, W]
  at::Tensor forward(const at::Tensor& like);
  at::Tensor encode(int64_t height, int64_t width, const c10::Device& device);  // [C, H, W]
  PositionEmbeddingSineOptions options;

 private:
  int64_t cached_h_ = -1, cached_w_ = -1;
  at::Tensor cached_;
};
TORCH_MODULE(PositionEmbeddingSine);

}  // namespace iris::models::sam2
