// SAM's prompt encoder: points and boxes become sparse tokens (random-Fourier position encoding
// plus a learned embedding per label), a mask prompt becomes a dense embedding.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <optional>

namespace iris::models::sam2 {

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
};
TORCH_MODULE(PromptEncoder);

}  // namespace iris::models::sam2
