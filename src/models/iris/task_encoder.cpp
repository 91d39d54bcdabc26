#include "models/iris/task_encoder.h"

#include <cmath>

#include "models/iris/position.h"

namespace iris::models {
namespace {

std::vector<int64_t> spatial_sizes(const at::Tensor& t) {
  return std::vector<int64_t>(t.sizes().begin() + 2, t.sizes().end());
}

// Linear (align_corners=false) upsampling of features to `size`, as the paper pools.
at::Tensor upsample(const at::Tensor& x, const std::vector<int64_t>& size) {
  return size.size() == 2 ? at::upsample_bilinear2d(x, size, /*align_corners=*/false)
                          : at::upsample_trilinear3d(x, size, /*align_corners=*/false);
}

// Uᵀ: the adjoint of `upsample`, from [B, K, *S] down to [B, K, *s].
at::Tensor upsample_adjoint(const at::Tensor& y, const std::vector<int64_t>& small) {
  const std::vector<int64_t> big = spatial_sizes(y);
  std::vector<int64_t> input_size{y.size(0), y.size(1)};
  input_size.insert(input_size.end(), small.begin(), small.end());
  return small.size() == 2
             ? at::upsample_bilinear2d_backward(y, big, input_size, false, {}, {})
             : at::upsample_trilinear3d_backward(y, big, input_size, false, {}, {}, {});
}

}  // namespace

at::Tensor foreground_pool(const at::Tensor& features, const at::Tensor& masks) {
  TORCH_CHECK(features.dim() == masks.dim() && features.size(0) == masks.size(0),
              "foreground_pool: features ", features.sizes(), " and masks ", masks.sizes(),
              " need the same batch and rank");
  const auto small = spatial_sizes(features);
  const at::Tensor pooled_masks = upsample_adjoint(masks.to(features.scalar_type()), small);
  const int64_t b = features.size(0), c = features.size(1), k = masks.size(1);
  const at::Tensor sums = at::bmm(pooled_masks.reshape({b, k, -1}),
                                  features.reshape({b, c, -1}).transpose(1, 2));  // [B, K, C]
  const at::Tensor area = masks.reshape({b, k, -1}).sum(-1, /*keepdim=*/true).clamp_min(1e-6);
  return sums / area.to(sums.scalar_type());
}

at::Tensor foreground_pool_naive(const at::Tensor& features, const at::Tensor& masks) {
  const at::Tensor up = upsample(features, spatial_sizes(masks));   // [B, C, *S]
  const at::Tensor product = up.unsqueeze(1) * masks.unsqueeze(2);  // [B, K, C, *S]
  const int64_t b = features.size(0), c = features.size(1), k = masks.size(1);
  const at::Tensor area = masks.reshape({b, k, -1}).sum(-1).clamp_min(1e-6);
  return product.reshape({b, k, c, -1}).sum(-1) / area.unsqueeze(-1);
}

TaskEncoderImpl::TaskEncoderImpl(const IrisOptions& o) : options(o) {
  const int64_t c = o.feature_channels();
  mask_fuse = register_module("mask_fuse", Conv(ConvOptions{o.spatial_dims, c + 1, c, 1, 1, true}));
  query_tokens = register_parameter("query_tokens",
                                    torch::randn({1, o.query_tokens, c}) / std::sqrt(double(c)));
  cross_attn = register_module("cross_attn", Attention(c, o.heads));
  self_attn = register_module("self_attn", Attention(c, o.heads));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
  norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
  mlp = register_module("mlp", Mlp(c, 4 * c, c));
}

at::Tensor TaskEncoderImpl::forward(const at::Tensor& features, const at::Tensor& masks,
                                    const at::Tensor& prior_frequencies,
                                    const at::Tensor& prior_coords) {
  TORCH_CHECK(features.dim() == options.spatial_dims + 2 && masks.dim() == features.dim(),
              "task encoder: features [B, C, *s] and masks [B, K, *S] expected, got ",
              features.sizes(), " and ", masks.sizes());
  const int64_t b = features.size(0), c = features.size(1), k = masks.size(1);
  const auto small = spatial_sizes(features);
  const at::Tensor foreground = foreground_pool(features, masks);  // [B, K, C]

  // Context: each class sees the reference features together with its mask (area fraction per
  // feature cell), then m learnable queries gather what the task needs from them.
  const at::Tensor mask_low = small.size() == 2 ? at::adaptive_avg_pool2d(masks, small)
                                                : at::adaptive_avg_pool3d(masks, small);
  std::vector<int64_t> expanded{b, k, c};
  expanded.insert(expanded.end(), small.begin(), small.end());
  at::Tensor per_class =
      at::cat({features.unsqueeze(1).expand(expanded), mask_low.unsqueeze(2)}, 2);
  per_class = per_class.flatten(0, 1);  // [B·K, C + 1, *s]
  const at::Tensor fused = mask_fuse->forward(per_class).flatten(2).transpose(1, 2);  // [B·K, N, C]
  at::Tensor tokens = query_tokens.expand({b * k, options.query_tokens, c});
  tokens = norm1->forward(tokens + cross_attn->forward(tokens, fused));
  tokens = norm2->forward(tokens + self_attn->forward(tokens, tokens));
  tokens = norm3->forward(tokens + mlp->forward(tokens));
  at::Tensor task =
      at::cat({foreground.unsqueeze(2), tokens.view({b, k, options.query_tokens, c})}, 2);
  if (options.prior_features > 0) {
    TORCH_CHECK(prior_frequencies.defined(),
                "task encoder: the reference prior needs its frequencies");
    const at::Tensor pooled =
        fourier_pool(masks, prior_frequencies, options.prior_frequency, prior_coords)
            .to(task.scalar_type());  // [B, K, P]
    const int64_t padded = options.prior_rows() * c;
    task = at::cat({task, at::constant_pad_nd(pooled, {0, padded - options.prior_features})
                              .view({b, k, options.prior_rows(), c})},
                   2);
  }
  return task;
}

}  // namespace iris::models
