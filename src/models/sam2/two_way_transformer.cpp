#include "models/sam2/two_way_transformer.h"

namespace iris::models::sam2 {

namespace {

// nn.LayerNorm's default eps, which the official transformer keeps.
constexpr double kLayerNormEps = 1e-5;

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(kLayerNormEps));
}

}  // namespace

TwoWayAttentionBlockImpl::TwoWayAttentionBlockImpl(const TwoWayAttentionBlockOptions& o)
    : options(o) {
  const int64_t dim = o.embedding_dim;
  AttentionOptions cross{dim, o.num_heads, o.attention_downsample_rate};
  self_attn_ = register_module("self_attn", Attention(AttentionOptions{dim, o.num_heads}));
  norm1_ = register_module("norm1", layer_norm(dim));
  cross_attn_token_to_image_ = register_module("cross_attn_token_to_image", Attention(cross));
  norm2_ = register_module("norm2", layer_norm(dim));
  mlp_ = register_module("mlp", Mlp(MlpOptions{dim, o.mlp_dim, dim, 2, Activation::kRelu}));
  norm3_ = register_module("norm3", layer_norm(dim));
  norm4_ = register_module("norm4", layer_norm(dim));
  cross_attn_image_to_token_ = register_module("cross_attn_image_to_token", Attention(cross));
}

std::pair<at::Tensor, at::Tensor> TwoWayAttentionBlockImpl::forward(at::Tensor queries,
                                                                    at::Tensor keys,
                                                                    const at::Tensor& query_pe,
                                                                    const at::Tensor& key_pe) {
  if (options.skip_first_layer_pe) {
    // The output tokens carry no PE yet; the first block replaces them outright.
    queries = self_attn_(queries, queries, queries);
  } else {
    const auto q = queries + query_pe;
    queries = queries + self_attn_(q, q, queries);
  }
  queries = norm1_(queries);

  auto q = queries + query_pe;
  auto k = keys + key_pe;
  queries = norm2_(queries + cross_attn_token_to_image_(q, k, keys));

  queries = norm3_(queries + mlp_(queries));

  q = queries + query_pe;
  keys = norm4_(keys + cross_attn_image_to_token_(k, q, queries));
  return {queries, keys};
}

TwoWayTransformerImpl::TwoWayTransformerImpl(const TwoWayTransformerOptions& o) : options(o) {
  TORCH_CHECK(o.depth >= 1, "TwoWayTransformer: depth must be positive, got ", o.depth);
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth; ++i) {
    layers_->push_back(TwoWayAttentionBlock(TwoWayAttentionBlockOptions{
        o.embedding_dim, o.num_heads, o.mlp_dim, o.attention_downsample_rate, i == 0}));
  }
  final_attn_token_to_image_ = register_module(
      "final_attn_token_to_image",
      Attention(AttentionOptions{o.embedding_dim, o.num_heads, o.attention_downsample_rate}));
  norm_final_attn_ = register_module("norm_final_attn", layer_norm(o.embedding_dim));
}

std::pair<at::Tensor, at::Tensor> TwoWayTransformerImpl::forward(
    const at::Tensor& image_embedding, const at::Tensor& image_pe,
    const at::Tensor& point_embedding) {
  const int64_t c = options.embedding_dim;
  TORCH_CHECK(image_embedding.dim() == 4 && image_embedding.size(1) == c,
              "TwoWayTransformer: image_embedding must be [B, ", c, ", h, w], got ",
              image_embedding.sizes());
  TORCH_CHECK(image_pe.sizes() == image_embedding.sizes(),
              "TwoWayTransformer: image_pe must match image_embedding ", image_embedding.sizes(),
              ", got ", image_pe.sizes());
  TORCH_CHECK(point_embedding.dim() == 3 && point_embedding.size(0) == image_embedding.size(0) &&
                  point_embedding.size(2) == c,
              "TwoWayTransformer: point_embedding must be [", image_embedding.size(0), ", N, ", c,
              "], got ", point_embedding.sizes());

  // [B, C, h, w] -> [B, h·w, C]
  const auto image_pe_seq = image_pe.flatten(2).permute({0, 2, 1});
  auto queries = point_embedding;
  auto keys = image_embedding.flatten(2).permute({0, 2, 1});
  for (const auto& layer : *layers_) {
    std::tie(queries, keys) = layer->as<TwoWayAttentionBlockImpl>()->forward(
        queries, keys, point_embedding, image_pe_seq);
  }
  const auto q = queries + point_embedding;
  const auto k = keys + image_pe_seq;
  queries = norm_final_attn_(queries + final_attn_token_to_image_(q, k, keys));
  return {queries, keys};
}

}  // namespace iris::models::sam2
