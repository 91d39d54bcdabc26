// SAM's prompt encoder: points and boxes become sparse tokens (random-Fourier position encoding
// plus a learned embedding per label), a mask prompt becomes a dense embedding.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <optional>

namespace iris::models::sam2 {

// Random-Fourier position encoding: a point c in [0, 1]^2 becomes
// [sin(2π (2c - 1) G), cos(2π (2c - 1) G)] for a fixed Gaussian G [2, num_pos_feats].
// Keys: positional_encoding_gaussian_matrix (a buffer).
class PositionEmbeddingRandomImpl : public torch::nn::Module {
 public:
  explicit PositionEmbeddingRandomImpl(int64_t num_pos_feats = 64, double scale = 1.0);
  // Encoding of the cell centres of an h x w grid: [2 * num_pos_feats, h, w].
  at::Tensor forward(int64_t height, int64_t width);
  // coords: [B, N, 2] xy in pixels of an image of `image_size` (h, w) -> [B, N, 2 * num_pos_feats]
  at::Tensor forward_with_coords(const at::Tensor& coords, std::array<int64_t, 2> image_size);
  // unit_coords: [..., 2] xy in [0, 1] -> [..., 2 * num_pos_feats]
  at::Tensor encode(const at::Tensor& unit_coords);

  at::Tensor positional_encoding_gaussian_matrix;  // [2, num_pos_feats]
};
TORCH_MODULE(PositionEmbeddingRandom);

struct PromptEncoderOptions {
  int64_t embed_dim = 256;
  std::array<int64_t, 2> image_embedding_size{64, 64};  // (h, w) of the image embedding
  std::array<int64_t, 2> input_image_size{1024, 1024};  // (H, W) of the model input
  int64_t mask_in_chans = 16;
};

struct PromptEmbeddings {
  at::Tensor sparse;  // [B, N, embed_dim]
  at::Tensor dense;   // [B, embed_dim, h, w]
};

// Keys: pe_layer.positional_encoding_gaussian_matrix (buffer [2, embed_dim/2]),
// point_embeddings.{0..3}.weight, not_a_point_embed.weight, no_mask_embed.weight,
// mask_downscaling.{0,1,3,4,6}.
class PromptEncoderImpl : public torch::nn::Module {
 public:
  explicit PromptEncoderImpl(const PromptEncoderOptions& options);
  // point_coords: [B, N, 2] xy in input pixels; point_labels: [B, N] int (1 positive,
  // 0 negative, 2/3 box corners, -1 padding); boxes: [B, 4] xyxy in input pixels;
  // masks: [B, 1, 4h, 4w] logits. Any may be absent; B is taken from the first present.
  // As the official encoder: a padding point is appended when there are points but no boxes.
  PromptEmbeddings forward(const std::optional<at::Tensor>& point_coords,
                           const std::optional<at::Tensor>& point_labels,
                           const std::optional<at::Tensor>& boxes,
                           const std::optional<at::Tensor>& masks);
  // Position encoding of the image embedding grid: [1, embed_dim, h, w] (cached).
  at::Tensor get_dense_pe();

  PromptEncoderOptions options;

 private:
  // [B, N, 2], [B, N] -> [B, N (+1 with pad), embed_dim]
  at::Tensor embed_points(at::Tensor coords, at::Tensor labels, bool pad);
  at::Tensor embed_boxes(const at::Tensor& boxes);  // [B, 4] -> [B, 2, embed_dim]

  PositionEmbeddingRandom pe_layer_{nullptr};
  torch::nn::ModuleList point_embeddings_{nullptr};  // 4 x Embedding(1, embed_dim)
  torch::nn::Embedding not_a_point_embed_{nullptr}, no_mask_embed_{nullptr};
  // conv 2x2/2, LayerNorm2d, GELU, conv 2x2/2, LayerNorm2d, GELU, conv 1x1: keys 0, 1, 3, 4, 6.
  torch::nn::Sequential mask_downscaling_{nullptr};
  // get_dense_pe() is recomputed only when the Gaussian buffer changes (loads, device moves).
  at::Tensor dense_pe_;
  const void* dense_pe_source_ = nullptr;
  int64_t dense_pe_version_ = -1;
};
TORCH_MODULE(PromptEncoder);

}  // namespace iris::models::sam2
