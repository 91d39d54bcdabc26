// Building blocks shared by the 2D and 3D IRIS networks: the same parameters and checkpoint keys
// whatever `spatial_dims` is, with the convolution picked at run time.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

namespace iris::models {

// A convolution over 2 or 3 spatial dims. Keys: weight [out, in, k, k(, k)], bias [out].
struct ConvOptions {
  int64_t spatial_dims = 3;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  int64_t kernel_size = 3;
  int64_t stride = 1;
  bool bias = true;
  bool transposed = false;  // stride-s transposed conv with kernel s (upsampling)
};

class ConvImpl : public torch::nn::Module {
 public:
  explicit ConvImpl(const ConvOptions& options);
  // x: [B, in, *spatial] -> [B, out, *spatial']
  at::Tensor forward(const at::Tensor& x);
  ConvOptions options;
  at::Tensor weight, bias;
};
TORCH_MODULE(Conv);

// Instance norm with affine weight/bias over any number of spatial dims.
class InstanceNormImpl : public torch::nn::Module {
 public:
  explicit InstanceNormImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
};
TORCH_MODULE(InstanceNorm);

// conv3(stride) -> IN -> LeakyReLU -> conv3 -> IN, plus a 1x1 (stride) shortcut when the shape
// changes; LeakyReLU(0.01) after the sum.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t spatial_dims, int64_t in_channels, int64_t out_channels, int64_t stride);
  at::Tensor forward(const at::Tensor& x);
  Conv conv1{nullptr}, conv2{nullptr}, shortcut{nullptr};
  InstanceNorm norm1{nullptr}, norm2{nullptr};
};
TORCH_MODULE(ResidualBlock);

// Multi-head attention over token sequences [B, L, C] (batch first); fused kernel where LibTorch
// has one. Keys: q_proj, k_proj, v_proj, out_proj.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads);
  // q: [B, Lq, C], kv: [B, Lk, C] -> [B, Lq, C]
  at::Tensor forward(const at::Tensor& q, const at::Tensor& kv);
  int64_t heads;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(Attention);

// Two-layer MLP with GELU: dim -> hidden -> out.
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t dim, int64_t hidden, int64_t out);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace iris::models
