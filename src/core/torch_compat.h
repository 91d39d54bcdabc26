// The one place that knows which LibTorch version we build against (PyPI 2.x or Debian's 1.13).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/api/include/torch/version.h>

#include <optional>

#define IRIS_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||       \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace iris {

// softmax(q·kᵀ/√d + mask)·v over the last two dims. q: [..., Lq, d], k: [..., Lk, d],
// v: [..., Lk, dv]; attn_mask: additive float or boolean (true = keep), broadcastable to
// [..., Lq, Lk]. Uses LibTorch's fused kernel on 2.x, an explicit implementation on 1.13.
at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const std::optional<at::Tensor>& attn_mask = std::nullopt);

// The explicit implementation, always available (tests compare the two).
at::Tensor dot_product_attention_explicit(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v,
                                                 const std::optional<at::Tensor>& attn_mask = std::nullopt);

}  // namespace iris
