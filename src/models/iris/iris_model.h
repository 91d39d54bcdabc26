// The IRIS in-context segmentation network ("Show and Segment", CVPR 2025), 2D or 3D from one
// implementation:
//   encoder       residual UNet-style encoder shared by reference and query images
//   task_encoder  reference image + mask -> task embedding per class: a foreground embedding
//                 (mask-pooled features) and m contextual tokens (learnable queries attending to
//                 the mask-conditioned reference features)
//   decoder       all classes' task tokens and the query features attend to each other in one
//                 pass (classes interact, order does not matter), then an upsampling path with
//                 skips; per-class logits are dot products of pixel features and class embeddings
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "models/iris/encoder.h"
#include "models/iris/mask_decoder.h"
#include "models/iris/task_encoder.h"

namespace iris::models {

class IrisModelImpl : public torch::nn::Module {
 public:
  explicit IrisModelImpl(const IrisOptions& options);
  // Reference images [B, in, *S] with masks [B, K, *S] -> task embeddings
  // [B, K, tokens_per_class, C].
  at::Tensor encode_task(const at::Tensor& ref_images, const at::Tensor& ref_masks);
  // Query images [B, in, *S] and task embeddings -> logits [B, K, *S].
  IrisOutput segment(const at::Tensor& query_images, const at::Tensor& task);
  IrisOutput forward(const at::Tensor& query_images, const at::Tensor& ref_images,
                     const at::Tensor& ref_masks);
  // Named parameter groups for training recipes.
  static std::vector<std::string> parameter_groups() { return {"encoder", "task_encoder", "decoder"}; }

  // Per-voxel coordinates of the reference prior for images [B, in, *S] -> [B, N, d] in their
  // foreground frames (options.prior_frame), or undefined: the grid's.
  at::Tensor prior_coordinates(const at::Tensor& images) const;

  IrisOptions options;
  IrisEncoder encoder{nullptr};
  TaskEncoder task_encoder{nullptr};
  MaskDecoder decoder{nullptr};
  at::Tensor prior_frequencies;  // [d, P/2] fixed (seeded) Fourier frequencies; a buffer
};
TORCH_MODULE(IrisModel);

}  // namespace iris::models
