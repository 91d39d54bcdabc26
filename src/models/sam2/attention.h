// The attention layer of SAM's transformers: projections to an internal width
// (embedding_dim / downsample_rate), multi-head scaled dot-product attention, projection back.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace iris::models::sam2 {

struct AttentionOptions {
  int64_t embedding_dim = 256;
  int64_t num_heads = 8;
  int64_t downsample_rate = 1;
  double dropout = 0.0;   // attention dropout, training only
  int64_t kv_in_dim = 0;  // 0 = embedding_dim
};

// Keys: q_proj, k_proj, v_proj, out_proj.
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& options);
  // q: [B, Nq, embedding_dim], k, v: [B, Nk, kv_in_dim] -> [B, Nq, embedding_dim]
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

  // [B, N, C] -> [B, heads, N, C / heads] and back.
  at::Tensor separate_heads(const at::Tensor& x) const;
  at::Tensor recombine_heads(const at::Tensor& x) const;
  // Scaled dot-product attention over separated heads, with dropout while training.
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

  AttentionOptions options;
  int64_t internal_dim = 0;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(Attention);

}  // namespace iris::models::sam2
