#include "models/iris/mask_decoder.h"

namespace iris::models {
namespace {

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}));
}

// Per-class logits: pixel features [B, D, *S] · class embeddings [B, K, D] -> [B, K, *S].
at::Tensor class_logits(const at::Tensor& pixels, const at::Tensor& classes) {
  const int64_t b = pixels.size(0), d = pixels.size(1);
  std::vector<int64_t> shape{b, classes.size(1)};
  shape.insert(shape.end(), pixels.sizes().begin() + 2, pixels.sizes().end());
  return at::bmm(classes, pixels.reshape({b, d, -1})).view(shape);
}

}  // namespace

DecoderLayerImpl::DecoderLayerImpl(int64_t dim, int64_t heads) {
  token_to_image = register_module("token_to_image", Attention(dim, heads));
  image_to_token = register_module("image_to_token", Attention(dim, heads));
  token_self = register_module("token_self", Attention(dim, heads));
  norm1 = register_module("norm1", layer_norm(dim));
  norm2 = register_module("norm2", layer_norm(dim));
  norm3 = register_module("norm3", layer_norm(dim));
  norm4 = register_module("norm4", layer_norm(dim));
  norm5 = register_module("norm5", layer_norm(dim));
  token_mlp = register_module("token_mlp", Mlp(dim, 4 * dim, dim));
  image_mlp = register_module("image_mlp", Mlp(dim, 2 * dim, dim));
}

void DecoderLayerImpl::forward(at::Tensor& tokens, at::Tensor& features) {
  tokens = norm1->forward(tokens + token_to_image->forward(tokens, features));
  features = norm2->forward(features + image_to_token->forward(features, tokens));
  tokens = norm3->forward(tokens + token_self->forward(tokens, tokens));  // classes interact here
  tokens = norm4->forward(tokens + token_mlp->forward(tokens));
  features = norm5->forward(features + image_mlp->forward(features));
}

MaskDecoderImpl::MaskDecoderImpl(const IrisOptions& o) : options(o) {
  const int64_t c = o.feature_channels();
  token_type = register_module("token_type", torch::nn::Embedding(o.tokens_per_class(), c));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) layers->push_back(DecoderLayer(c, o.heads));
  up = register_module("up", torch::nn::ModuleList());
  fuse = register_module("fuse", torch::nn::ModuleList());
  aux_embed = register_module("aux_embed", torch::nn::ModuleList());
  for (int64_t l = o.stages - 1; l >= 0; --l) {
    up->push_back(Conv(ConvOptions{o.spatial_dims, o.channels(l + 1), o.channels(l), 2, 2, true, true}));
    fuse->push_back(ResidualBlock(o.spatial_dims, 2 * o.channels(l), o.channels(l), 1));
    if (o.deep_supervision && l > 0) aux_embed->push_back(Mlp(c, c, o.channels(l)));
  }
  class_embed = register_module("class_embed", Mlp(c, c, o.channels(0)));
}

IrisOutput MaskDecoderImpl::forward(const std::vector<at::Tensor>& levels, const at::Tensor& task) {
  const int64_t c = options.feature_channels(), m1 = options.tokens_per_class();
  TORCH_CHECK(static_cast<int64_t>(levels.size()) == options.stages + 1,
              "mask decoder: expected ", options.stages + 1, " feature levels, got ", levels.size());
  TORCH_CHECK(task.dim() == 4 && task.size(2) == m1 && task.size(3) == c,
              "mask decoder: task embeddings must be [B, K, ", m1, ", ", c, "], got ", task.sizes());
  const at::Tensor& deepest = levels.back();  // [B, C, *s]
  const int64_t b = deepest.size(0), k = task.size(1);
  TORCH_CHECK(task.size(0) == b, "mask decoder: batch of task (", task.size(0),
              ") and query (", b, ") differ");

  // One token set for all classes; the slot embedding marks foreground vs context tokens and is
  // the same for every class, so permuting classes permutes the outputs and nothing else.
  at::Tensor tokens = (task + token_type->weight.view({1, 1, m1, c})).reshape({b, k * m1, c});
  at::Tensor features = deepest.flatten(2).transpose(1, 2);  // [B, N, C]
  for (const auto& layer : *layers) layer->as<DecoderLayer>()->forward(tokens, features);

  const at::Tensor summary = tokens.view({b, k, m1, c}).mean(2);  // [B, K, C]
  std::vector<int64_t> shape(deepest.sizes().begin(), deepest.sizes().end());
  at::Tensor x = features.transpose(1, 2).reshape(shape);
  IrisOutput out;
  std::size_t aux = 0;
  for (std::size_t i = 0; i < up->size(); ++i) {
    const int64_t level = options.stages - 1 - static_cast<int64_t>(i);
    x = up[i]->as<Conv>()->forward(x);
    x = fuse[i]->as<ResidualBlock>()->forward(at::cat({x, levels[level]}, 1));
    if (options.deep_supervision && level > 0) {
      out.auxiliary.push_back(class_logits(x, aux_embed[aux++]->as<Mlp>()->forward(summary)));
    }
  }
  out.logits = class_logits(x, class_embed->forward(summary));
  return out;
}

}  // namespace iris::models
