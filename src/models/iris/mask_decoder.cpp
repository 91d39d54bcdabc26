#include "models/iris/mask_decoder.h"

#include "models/iris/position.h"

namespace iris::models {
namespace {

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}));
}

// Per-class logits: pixel features [B, D, *S] · class embeddings [B, K, D] -> [B, K, *S]; with
// per-class pixel features [B·K, D, *S], each class's own features.
at::Tensor class_logits(const at::Tensor& pixels, const at::Tensor& classes, bool per_class) {
  const int64_t b = classes.size(0), k = classes.size(1), d = pixels.size(1);
  std::vector<int64_t> shape{b, k};
  shape.insert(shape.end(), pixels.sizes().begin() + 2, pixels.sizes().end());
  if (per_class) {
    return at::bmm(classes.reshape({b * k, 1, d}), pixels.reshape({b * k, d, -1})).view(shape);
  }
  return at::bmm(classes, pixels.reshape({b, d, -1})).view(shape);
}

// x: [N, C, *s] modulated by (1 + γ) and β from `film` applied to summary rows [N, C'].
at::Tensor modulate(const at::Tensor& x, torch::nn::LinearImpl& film, const at::Tensor& summary) {
  const auto parts = film.forward(summary).chunk(2, -1);
  std::vector<int64_t> shape{x.size(0), x.size(1)};
  shape.resize(static_cast<std::size_t>(x.dim()), 1);
  return x * (1 + parts[0].reshape(shape)) + parts[1].reshape(shape);
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
  token_type = register_module("token_type", torch::nn::Embedding(o.feature_rows(), c));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) layers->push_back(DecoderLayer(c, o.heads));
  up = register_module("up", torch::nn::ModuleList());
  fuse = register_module("fuse", torch::nn::ModuleList());
  aux_embed = register_module("aux_embed", torch::nn::ModuleList());
  for (int64_t l = o.stages - 1; l >= 0; --l) {
    up->push_back(
        Conv(ConvOptions{o.spatial_dims, o.channels(l + 1), o.channels(l), 2, 2, true, true}));
    fuse->push_back(ResidualBlock(o.spatial_dims, 2 * o.channels(l), o.channels(l), 1));
    if (o.deep_supervision && l > 0) aux_embed->push_back(Mlp(c, c, o.channels(l)));
  }
  class_embed = register_module("class_embed", Mlp(c, c, o.channels(0)));
  if (o.class_film) {
    film = register_module("film", torch::nn::ModuleList());
    film->push_back(torch::nn::Linear(c, 2 * c));
    for (int64_t l = o.stages - 1; l >= 0; --l)
      film->push_back(torch::nn::Linear(c, 2 * o.channels(l)));
  }
  if (o.prior_features > 0) {
    // Starts as the smoothed reference mask thresholded at 1/2; appearance joins as training opens
    // the gate.
    prior_mix = register_parameter("prior_mix", torch::eye(o.prior_features));
    prior_scale = register_parameter("prior_scale", torch::full({1}, 6.0));
    prior_bias = register_parameter("prior_bias", torch::full({1}, -3.0));
    appearance_gate = register_parameter("appearance_gate", torch::zeros({1}));
    if (o.prior_frame)
      prior_frame_mix = register_parameter("prior_frame_mix", torch::zeros({o.spatial_dims}));
  }
}

IrisOutput MaskDecoderImpl::forward(const std::vector<at::Tensor>& levels, const at::Tensor& task,
                                    const at::Tensor& prior_frequencies,
                                    const at::Tensor& prior_coords) {
  const int64_t c = options.feature_channels(), m1 = options.feature_rows();
  const int64_t rows = options.tokens_per_class();
  TORCH_CHECK(static_cast<int64_t>(levels.size()) == options.stages + 1, "mask decoder: expected ",
              options.stages + 1, " feature levels, got ", levels.size());
  TORCH_CHECK(task.dim() == 4 && task.size(2) == rows && task.size(3) == c,
              "mask decoder: task embeddings must be [B, K, ", rows, ", ", c, "], got ",
              task.sizes());
  const at::Tensor& deepest = levels.back();  // [B, C, *s]
  const int64_t b = deepest.size(0), k = task.size(1);
  TORCH_CHECK(task.size(0) == b, "mask decoder: batch of task (", task.size(0), ") and query (", b,
              ") differ");

  // One token set for all classes; the slot embedding marks foreground vs context tokens and is
  // the same for every class, so permuting classes permutes the outputs and nothing else.
  at::Tensor tokens =
      (task.narrow(2, 0, m1) + token_type->weight.view({1, 1, m1, c})).reshape({b, k * m1, c});
  at::Tensor features = deepest.flatten(2).transpose(1, 2);  // [B, N, C]
  for (const auto& layer : *layers) layer->as<DecoderLayer>()->forward(tokens, features);

  const at::Tensor summary = tokens.view({b, k, m1, c}).mean(2);  // [B, K, C]
  std::vector<int64_t> shape(deepest.sizes().begin(), deepest.sizes().end());
  at::Tensor x = features.transpose(1, 2).reshape(shape);
  // Per-class path: the B·K rows are (batch, class) pairs, each modulated by its class summary.
  const at::Tensor class_rows = summary.reshape({b * k, c});
  auto per_class = [&](const at::Tensor& t) {
    if (!options.class_film) return t;
    std::vector<int64_t> expanded{b, k};
    expanded.insert(expanded.end(), t.sizes().begin() + 1, t.sizes().end());
    return t.unsqueeze(1).expand(expanded).flatten(0, 1);
  };
  if (options.class_film) x = modulate(per_class(x), *film[0]->as<torch::nn::Linear>(), class_rows);
  IrisOutput out;
  std::size_t aux = 0;
  for (std::size_t i = 0; i < up->size(); ++i) {
    const int64_t level = options.stages - 1 - static_cast<int64_t>(i);
    x = up[i]->as<Conv>()->forward(x);
    x = fuse[i]->as<ResidualBlock>()->forward(at::cat({x, per_class(levels[level])}, 1));
    if (options.class_film) x = modulate(x, *film[i + 1]->as<torch::nn::Linear>(), class_rows);
    if (options.deep_supervision && level > 0) {
      out.auxiliary.push_back(
          class_logits(x, aux_embed[aux++]->as<Mlp>()->forward(summary), options.class_film));
    }
  }
  out.logits = class_logits(x, class_embed->forward(summary), options.class_film);
  if (options.prior_features > 0) {
    TORCH_CHECK(prior_frequencies.defined(),
                "mask decoder: the reference prior needs its frequencies");
    const at::Tensor pooled =
        task.narrow(2, m1, rows - m1).reshape({b, k, -1}).narrow(2, 0, options.prior_features);
    const std::vector<int64_t> size(out.logits.sizes().begin() + 2, out.logits.sizes().end());
    const at::Tensor prior =
        fourier_render(at::matmul(pooled, prior_mix.t()), prior_frequencies, size, prior_coords);
    out.logits = appearance_gate * out.logits + prior_scale * prior + prior_bias;
  }
  return out;
}

}  // namespace iris::models
