#include "models/iris/layers.h"

#include <algorithm>
#include <cmath>

#include <c10/core/impl/LocalDispatchKeySet.h>

#include "core/precision.h"
#include "core/torch_compat.h"

namespace iris::models {

ConvImpl::ConvImpl(const ConvOptions& o) : options(o) {
  TORCH_CHECK(o.spatial_dims == 2 || o.spatial_dims == 3, "spatial_dims must be 2 or 3, got ",
              o.spatial_dims);
  std::vector<int64_t> shape = o.transposed ? std::vector<int64_t>{o.in_channels, o.out_channels}
                                            : std::vector<int64_t>{o.out_channels, o.in_channels};
  for (int64_t d = 0; d < o.spatial_dims; ++d) shape.push_back(o.kernel_size);
  weight = register_parameter("weight", torch::empty(shape));
  // Kaiming-uniform as torch.nn.ConvNd initialises, fan-in from the input side.
  const int64_t fan_in = (o.transposed ? o.out_channels : o.in_channels) *
                         static_cast<int64_t>(std::pow(o.kernel_size, o.spatial_dims));
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (o.bias) bias = register_parameter("bias", torch::empty({o.out_channels}).uniform_(-bound, bound));
}

at::Tensor ConvImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == options.spatial_dims + 2 && x.size(1) == options.in_channels,
              "Conv expects [B, ", options.in_channels, ", ", options.spatial_dims,
              " spatial dims], got ", x.sizes());
  const std::vector<int64_t> stride(options.spatial_dims, options.stride);
  const std::vector<int64_t> zeros(options.spatial_dims, 0);
  if (options.transposed) {
    return options.spatial_dims == 2 ? at::conv_transpose2d(x, weight, bias, stride)
                                     : at::conv_transpose3d(x, weight, bias, stride);
  }
  const std::vector<int64_t> padding(options.spatial_dims, options.kernel_size / 2);
  if (options.spatial_dims == 3 && x.is_cpu() && options.kernel_size > 1 &&
      (x.scalar_type() == at::kBFloat16 ||
       autocast_dtype_now(c10::DeviceType::CPU) == at::kBFloat16)) {
    const auto sizes = x.sizes();
    if (*std::min_element(sizes.begin() + 2, sizes.end()) < options.kernel_size) {
      // LibTorch 2.x's CPU bf16 conv3d (oneDNN) returns a weight gradient of garbage, often NaN,
      // when a spatial size is below the kernel (measured: depth 2, kernel 3); float32 there.
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
      const at::Tensor y = at::conv3d(x.to(at::kFloat), weight.to(at::kFloat),
                                      bias.defined() ? bias.to(at::kFloat) : bias, stride, padding);
      return y.to(at::kBFloat16);
    }
  }
  return options.spatial_dims == 2 ? at::conv2d(x, weight, bias, stride, padding)
                                   : at::conv3d(x, weight, bias, stride, padding);
}

InstanceNormImpl::InstanceNormImpl(int64_t channels) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

at::Tensor InstanceNormImpl::forward(const at::Tensor& x) {
  return at::instance_norm(x, weight, bias, /*running_mean=*/{}, /*running_var=*/{},
                           /*use_input_stats=*/true, /*momentum=*/0.1, /*eps=*/1e-5,
                           /*cudnn_enabled=*/true);
}

ResidualBlockImpl::ResidualBlockImpl(int64_t dims, int64_t in, int64_t out, int64_t stride) {
  conv1 = register_module("conv1", Conv(ConvOptions{dims, in, out, 3, stride, false}));
  norm1 = register_module("norm1", InstanceNorm(out));
  conv2 = register_module("conv2", Conv(ConvOptions{dims, out, out, 3, 1, false}));
  norm2 = register_module("norm2", InstanceNorm(out));
  if (in != out || stride != 1) {
    shortcut = register_module("shortcut", Conv(ConvOptions{dims, in, out, 1, stride, false}));
  }
}

at::Tensor ResidualBlockImpl::forward(const at::Tensor& x) {
  at::Tensor y = at::leaky_relu(norm1->forward(conv1->forward(x)), 0.01);
  y = norm2->forward(conv2->forward(y));
  return at::leaky_relu(y + (shortcut ? shortcut->forward(x) : x), 0.01);
}

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads_) : heads(heads_) {
  TORCH_CHECK(dim % heads == 0, "attention: dim ", dim, " is not divisible by ", heads, " heads");
  q_proj = register_module("q_proj", torch::nn::Linear(dim, dim));
  k_proj = register_module("k_proj", torch::nn::Linear(dim, dim));
  v_proj = register_module("v_proj", torch::nn::Linear(dim, dim));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
}

at::Tensor AttentionImpl::forward(const at::Tensor& q, const at::Tensor& kv) {
  const int64_t b = q.size(0), lq = q.size(1), lk = kv.size(1), c = q.size(2);
  auto split = [&](const at::Tensor& t, int64_t l) {
    return t.view({b, l, heads, c / heads}).transpose(1, 2);  // [B, heads, L, C/heads]
  };
  const at::Tensor out = dot_product_attention(split(q_proj->forward(q), lq),
                                               split(k_proj->forward(kv), lk),
                                               split(v_proj->forward(kv), lk));
  return out_proj->forward(out.transpose(1, 2).reshape({b, lq, c}));
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden, int64_t out) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, out));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) { return fc2->forward(at::gelu(fc1->forward(x))); }

}  // namespace iris::models
