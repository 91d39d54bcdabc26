#include "models/sam2/common.h"

#include <cmath>

namespace iris::models::sam2 {

at::Tensor gelu_exact(const at::Tensor& x) { return at::gelu(x); }

at::Tensor resize_bilinear(const at::Tensor& x, int64_t h, int64_t w, bool antialias) {
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBilinear)
                               .align_corners(false)
                               .antialias(antialias));
}

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

at::Tensor LayerNorm2dImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == weight.size(0), "LayerNorm2d expects [B, ",
              weight.size(0), ", H, W], got ", x.sizes());
  const auto u = x.mean(1, /*keepdim=*/true);
  const auto s = (x - u).pow(2).mean(1, /*keepdim=*/true);
  const auto y = (x - u) / torch::sqrt(s + eps);
  return weight.view({1, -1, 1, 1}) * y + bias.view({1, -1, 1, 1});
}

MlpImpl::MlpImpl(const MlpOptions& o) : options(o) {
  TORCH_CHECK(o.num_layers >= 1, "Mlp needs at least one layer, got ", o.num_layers);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) {
    const int64_t in = i == 0 ? o.input_dim : o.hidden_dim;
    const int64_t out = i == o.num_layers - 1 ? o.output_dim : o.hidden_dim;
    layers->push_back(torch::nn::Linear(in, out));
  }
}

at::Tensor MlpImpl::forward(at::Tensor x) {
  for (int64_t i = 0; i < options.num_layers; ++i) {
    x = layers->at<torch::nn::LinearImpl>(i).forward(x);
    if (i < options.num_layers - 1) {
      x = options.activation == Activation::kRelu ? torch::relu(x) : gelu_exact(x);
    }
  }
  return options.sigmoid_output ? torch::sigmoid(x) : x;
}

PositionEmbeddingSineImpl::PositionEmbeddingSineImpl(const PositionEmbeddingSineOptions& o)
    : options(o) {
  TORCH_CHECK(o.num_pos_feats % 2 == 0, "PositionEmbeddingSine needs an even num_pos_feats, got ",
              o.num_pos_feats);
  if (options.scale == 0.0) options.scale = 2.0 * M_PI;
}

at::Tensor PositionEmbeddingSineImpl::encode(int64_t h, int64_t w, const c10::Device& device) {
  if (cached_.defined() && cached_h_ == h && cached_w_ == w && cached_.device() == device) {
    return cached_;
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const int64_t half = options.num_pos_feats / 2;
  auto y = torch::arange(1, h + 1, f32).view({h, 1}).expand({h, w});
  auto x = torch::arange(1, w + 1, f32).view({1, w}).expand({h, w});
  if (options.normalize) {
    constexpr double kEps = 1e-6;
    y = y / (static_cast<double>(h) + kEps) * options.scale;
    x = x / (static_cast<double>(w) + kEps) * options.scale;
  }
  auto dim_t = torch::arange(half, f32);
  dim_t = torch::pow(options.temperature, 2.0 * torch::floor_divide(dim_t, 2) / half);
  auto interleave = [&](const at::Tensor& e) {  // [H, W] -> [H, W, half]
    const auto p = e.unsqueeze(-1) / dim_t;
    using torch::indexing::None;
    using torch::indexing::Slice;
    return torch::stack({p.index({"...", Slice(0, None, 2)}).sin(),
                         p.index({"...", Slice(1, None, 2)}).cos()},
                        3)
        .flatten(2);
  };
  cached_ = torch::cat({interleave(y), interleave(x)}, 2).permute({2, 0, 1}).contiguous();
  cached_h_ = h;
  cached_w_ = w;
  return cached_;
}

at::Tensor PositionEmbeddingSineImpl::forward(const at::Tensor& like) {
  TORCH_CHECK(like.dim() == 4, "PositionEmbeddingSine expects [B, C, H, W], got ", like.sizes());
  return encode(like.size(2), like.size(3), like.device())
      .unsqueeze(0)
      .expand({like.size(0), -1, -1, -1});
}

}  // namespace iris::models::sam2
