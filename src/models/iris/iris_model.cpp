#include "models/iris/iris_model.h"

namespace iris::models {

IrisModelImpl::IrisModelImpl(const IrisOptions& o) : options(o) {
  TORCH_CHECK(o.feature_channels() % o.heads == 0, "IRIS: feature channels ", o.feature_channels(),
              " must be divisible by heads ", o.heads);
  encoder = register_module("encoder", IrisEncoder(o));
  task_encoder = register_module("task_encoder", TaskEncoder(o));
  decoder = register_module("decoder", MaskDecoder(o));
}

at::Tensor IrisModelImpl::encode_task(const at::Tensor& ref_images, const at::Tensor& ref_masks) {
  TORCH_CHECK(ref_images.dim() == options.spatial_dims + 2 && ref_masks.dim() == ref_images.dim(),
              "IRIS: reference images [B, in, *S] and masks [B, K, *S] expected, got ",
              ref_images.sizes(), " and ", ref_masks.sizes());
  TORCH_CHECK(ref_images.sizes().slice(2) == ref_masks.sizes().slice(2),
              "IRIS: reference image and mask sizes differ: ", ref_images.sizes(), " vs ",
              ref_masks.sizes());
  return task_encoder->forward(encoder->forward(ref_images).back(), ref_masks);
}

IrisOutput IrisModelImpl::segment(const at::Tensor& query_images, const at::Tensor& task) {
  return decoder->forward(encoder->forward(query_images), task);
}

IrisOutput IrisModelImpl::forward(const at::Tensor& query_images, const at::Tensor& ref_images,
                                  const at::Tensor& ref_masks) {
  return segment(query_images, encode_task(ref_images, ref_masks));
}

}  // namespace iris::models
