#include "models/sam2/fpn_neck.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace iris::models::sam2 {

FpnNeckImpl::FpnNeckImpl(const FpnNeckOptions& o) : options(o) {
  if (o.backbone_channel_list.empty()) {
    throw ConfigError("FpnNeck: backbone_channel_list is empty");
  }
  if (o.fuse_type != "sum" && o.fuse_type != "avg") {
    throw ConfigError("FpnNeck: fuse_type must be sum or avg, got " + o.fuse_type);
  }
  if (o.fpn_interp_model != "nearest" && o.fpn_interp_model != "bilinear" &&
      o.fpn_interp_model != "bicubic") {
    throw ConfigError("FpnNeck: fpn_interp_model must be nearest, bilinear or bicubic, got " +
                      o.fpn_interp_model);
  }
  position_encoding =
      register_module("position_encoding", PositionEmbeddingSine(o.position_encoding));
  convs = register_module("convs", torch::nn::ModuleList());
  for (const int64_t dim : o.backbone_channel_list) {
    torch::nn::Sequential lateral;
    lateral->push_back("conv",
                       torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, o.d_model, o.kernel_size)
                                             .stride(o.stride)
                                             .padding(o.padding)));
    convs->push_back(lateral);
  }
  if (options.fpn_top_down_levels.empty()) {
    for (int64_t i = 0; i < static_cast<int64_t>(convs->size()); ++i) {
      options.fpn_top_down_levels.push_back(i);
    }
  }
}

std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> FpnNeckImpl::forward(
    const std::vector<at::Tensor>& xs) {
  const auto n = static_cast<int64_t>(convs->size());
  TORCH_CHECK(static_cast<int64_t>(xs.size()) == n, "FpnNeck expects ", n, " feature maps, got ",
              xs.size());
  std::vector<at::Tensor> out(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
  const auto& levels = options.fpn_top_down_levels;
  at::Tensor prev;
  // Top-down: lowest resolution (last input, convs.0) first.
  for (int64_t i = n - 1; i >= 0; --i) {
    const at::Tensor& x = xs[static_cast<size_t>(i)];
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.backbone_channel_list[n - 1 - i],
                "FpnNeck level ", i, " expects [B, ", options.backbone_channel_list[n - 1 - i],
                ", H, W], got ", x.sizes());
    const at::Tensor lateral = convs->at<torch::nn::SequentialImpl>(n - 1 - i).forward(x);
    if (prev.defined() && std::find(levels.begin(), levels.end(), i) != levels.end()) {
      // The official neck upsamples in float32 whatever the feature dtype.
      const at::Tensor coarse = prev.to(at::kFloat);
      const std::vector<int64_t> size{2 * coarse.size(2), 2 * coarse.size(3)};
      at::Tensor top_down;
      if (options.fpn_interp_model == "nearest") {
        top_down = at::upsample_nearest2d(coarse, size, 2.0, 2.0);
      } else if (options.fpn_interp_model == "bilinear") {
        top_down = at::upsample_bilinear2d(coarse, size, /*align_corners=*/false, 2.0, 2.0);
      } else {
        top_down = at::upsample_bicubic2d(coarse, size, /*align_corners=*/false, 2.0, 2.0);
      }
      prev = lateral + top_down;
      if (options.fuse_type == "avg") prev = prev / 2;
    } else {
      prev = lateral;
    }
    out[static_cast<size_t>(i)] = prev;
    pos[static_cast<size_t>(i)] = position_encoding->forward(prev).to(prev.scalar_type());
  }
  return {out, pos};
}

}  // namespace iris::models::sam2
