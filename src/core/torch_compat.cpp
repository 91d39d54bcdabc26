#include "core/torch_compat.h"

#include <cmath>

namespace iris {

at::Tensor dot_product_attention_explicit(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v,
                                                 const std::optional<at::Tensor>& attn_mask) {
  TORCH_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
              "attention: q, k, v need the same rank >= 2, got ", q.sizes(), k.sizes(), v.sizes());
  TORCH_CHECK(q.size(-1) == k.size(-1), "attention: q and k feature sizes differ: ", q.size(-1),
              " vs ", k.size(-1));
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // [..., Lq, Lk]
  if (attn_mask) {
    if (attn_mask->scalar_type() == at::kBool) {
      scores = scores.masked_fill(attn_mask->logical_not(), -std::numeric_limits<float>::infinity());
    } else {
      scores = scores + *attn_mask;
    }
  }
  return at::matmul(at::softmax(scores, -1), v);
}

at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const std::optional<at::Tensor>& attn_mask) {
#if IRIS_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v, attn_mask);
#else
  return dot_product_attention_explicit(q, k, v, attn_mask);
#endif
}

}  // namespace iris
