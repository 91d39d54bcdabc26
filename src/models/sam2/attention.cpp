#include "models/sam2/attention.h"

#include "core/torch_compat.h"

namespace iris::models::sam2 {

AttentionImpl::AttentionImpl(const AttentionOptions& o) : options(o) {
  if (options.kv_in_dim == 0) options.kv_in_dim = options.embedding_dim;
  TORCH_CHECK(o.downsample_rate > 0 && o.embedding_dim % o.downsample_rate == 0,
              "Attention: downsample_rate ", o.downsample_rate, " must divide embedding_dim ",
              o.embedding_dim);
  internal_dim = o.embedding_dim / o.downsample_rate;
  TORCH_CHECK(internal_dim % o.num_heads == 0, "Attention: num_heads ", o.num_heads,
              " must divide the internal dim ", internal_dim);
  q_proj = register_module("q_proj", torch::nn::Linear(o.embedding_dim, internal_dim));
  k_proj = register_module("k_proj", torch::nn::Linear(options.kv_in_dim, internal_dim));
  v_proj = register_module("v_proj", torch::nn::Linear(options.kv_in_dim, internal_dim));
  out_proj = register_module("out_proj", torch::nn::Linear(internal_dim, o.embedding_dim));
}

at::Tensor AttentionImpl::separate_heads(const at::Tensor& x) const {
  return x.reshape({x.size(0), x.size(1), options.num_heads, x.size(2) / options.num_heads})
      .transpose(1, 2);
}

at::Tensor AttentionImpl::recombine_heads(const at::Tensor& x) const {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

at::Tensor AttentionImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (is_training() && options.dropout > 0.0) {
    // The fused kernel's dropout is not exposed through torch_compat; do it explicitly.
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    auto w = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * scale, -1);
    w = torch::dropout(w, options.dropout, /*train=*/true);
    return torch::matmul(w, v);
  }
  return dot_product_attention(q, k, v);
}

at::Tensor AttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 3 && q.size(2) == options.embedding_dim, "Attention: q must be [B, N, ",
              options.embedding_dim, "], got ", q.sizes());
  TORCH_CHECK(k.dim() == 3 && k.size(2) == options.kv_in_dim && v.sizes() == k.sizes(),
              "Attention: k and v must be [B, N, ", options.kv_in_dim, "], got ", k.sizes(), " and ",
              v.sizes());
  auto out = attend(separate_heads(q_proj(q)), separate_heads(k_proj(k)), separate_heads(v_proj(v)));
  return out_proj(recombine_heads(out));
}

}  // namespace iris::models::sam2
