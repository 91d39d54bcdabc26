#include <gtest/gtest.h>

#include "core/torch_compat.h"

namespace iris {
namespace {

TEST(TorchCompat, AttentionMatchesTheExplicitFormula) {
  torch::manual_seed(0);
  const auto q = torch::randn({2, 4, 5, 8});  // [B, heads, Lq, d]
  const auto k = torch::randn({2, 4, 7, 8});
  const auto v = torch::randn({2, 4, 7, 3});
  const auto out = dot_product_attention(q, k, v);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 4, 5, 3}));
  // Independent reference: softmax over keys of scaled dot products, computed in double.
  const auto qd = q.to(torch::kDouble), kd = k.to(torch::kDouble), vd = v.to(torch::kDouble);
  const auto weights = torch::softmax(torch::einsum("bhqd,bhkd->bhqk", {qd, kd}) / std::sqrt(8.0), -1);
  const auto expected = torch::einsum("bhqk,bhkv->bhqv", {weights, vd}).to(torch::kFloat);
  EXPECT_TRUE(torch::allclose(out, expected, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(dot_product_attention_explicit(q, k, v), expected, 1e-5, 1e-6));
}

TEST(TorchCompat, BooleanAndAdditiveMasksAgree) {
  torch::manual_seed(1);
  const auto q = torch::randn({1, 3, 4});
  const auto k = torch::randn({1, 6, 4});
  const auto v = torch::randn({1, 6, 2});
  auto keep = torch::ones({3, 6}, torch::kBool);
  keep.index_put_({torch::indexing::Slice(), torch::indexing::Slice(4, 6)}, false);
  const auto additive = torch::zeros({3, 6}).masked_fill(keep.logical_not(), -1e9);
  const auto a = dot_product_attention(q, k, v, keep);
  const auto b = dot_product_attention_explicit(q, k, v, additive);
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6));
  // Masked keys have no influence: dropping them gives the same result.
  using torch::indexing::Slice;
  const auto c = dot_product_attention_explicit(q, k.index({Slice(), Slice(0, 4)}),
                                                       v.index({Slice(), Slice(0, 4)}));
  EXPECT_TRUE(torch::allclose(a, c, 1e-5, 1e-6));
}

TEST(TorchCompat, MismatchedShapesAreRejected) {
  EXPECT_THROW(dot_product_attention_explicit(torch::randn({2, 3}), torch::randn({2, 4}),
                                                     torch::randn({2, 4})),
               c10::Error);
}

}  // namespace
}  // namespace iris
