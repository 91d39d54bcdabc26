#include "models/iris/iris_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include "models/iris/position.h"

namespace iris::models {

IrisModelImpl::IrisModelImpl(const IrisOptions& o) : options(o) {
  TORCH_CHECK(o.feature_channels() % o.heads == 0, "IRIS: feature channels ", o.feature_channels(),
              " must be divisible by heads ", o.heads);
  encoder = register_module("encoder", IrisEncoder(o));
  task_encoder = register_module("task_encoder", TaskEncoder(o));
  decoder = register_module("decoder", MaskDecoder(o));
  if (o.prior_features > 0) {
    TORCH_CHECK(o.prior_features % 2 == 0, "IRIS: prior_features must be even, got ",
                o.prior_features);
    // Seeded on their own, so every model of a configuration has the same frequencies whatever
    // the global seed; saved as a buffer so checkpoints carry them.
    at::Generator generator = at::detail::createCPUGenerator(/*seed_val=*/0x1215);
    prior_frequencies =
        register_buffer("prior_frequencies",
                        at::randn({o.spatial_dims, o.prior_features / 2}, generator, at::kFloat) *
                            o.prior_frequency);
  }
}

at::Tensor IrisModelImpl::encode_task(const at::Tensor& ref_images, const at::Tensor& ref_masks) {
  TORCH_CHECK(ref_images.dim() == options.spatial_dims + 2 && ref_masks.dim() == ref_images.dim(),
              "IRIS: reference images [B, in, *S] and masks [B, K, *S] expected, got ",
              ref_images.sizes(), " and ", ref_masks.sizes());
  TORCH_CHECK(ref_images.sizes().slice(2) == ref_masks.sizes().slice(2),
              "IRIS: reference image and mask sizes differ: ", ref_images.sizes(), " vs ",
              ref_masks.sizes());
  return task_encoder->forward(encoder->forward(ref_images).back(), ref_masks, prior_frequencies,
                               prior_coordinates(ref_images));
}

at::Tensor IrisModelImpl::prior_coordinates(const at::Tensor& images) const {
  if (options.prior_features == 0 || !options.prior_frame) return {};
  const std::vector<int64_t> size(images.sizes().begin() + 2, images.sizes().end());
  return frame_coordinates(size, foreground_frame(images, options.prior_frame_axes),
                           decoder->prior_frame_mix);
}

IrisOutput IrisModelImpl::segment(const at::Tensor& query_images, const at::Tensor& task) {
  return decoder->forward(encoder->forward(query_images), task, prior_frequencies,
                          prior_coordinates(query_images));
}

IrisOutput IrisModelImpl::forward(const at::Tensor& query_images, const at::Tensor& ref_images,
                                  const at::Tensor& ref_masks) {
  return segment(query_images, encode_task(ref_images, ref_masks));
}

}  // namespace iris::models
