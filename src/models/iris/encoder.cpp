#include "models/iris/encoder.h"

#include "models/iris/position.h"

namespace iris::models {

IrisEncoderImpl::IrisEncoderImpl(const IrisOptions& o) {
  stem = register_module("stem", ResidualBlock(o.spatial_dims, o.in_channels, o.channels(0), 1));
  down = register_module("down", torch::nn::ModuleList());
  for (int64_t l = 0; l < o.stages; ++l) {
    down->push_back(ResidualBlock(o.spatial_dims, o.channels(l), o.channels(l + 1), 2));
  }
  if (o.position_encoding) {
    position_proj = register_module(
        "position_proj", torch::nn::Linear(o.feature_channels(), o.feature_channels()));
  }
}

std::vector<at::Tensor> IrisEncoderImpl::forward(const at::Tensor& x) {
  const int64_t factor = int64_t{1} << down->size();
  for (int64_t d = 2; d < x.dim(); ++d) {
    TORCH_CHECK(x.size(d) % factor == 0, "IRIS encoder: spatial size ", x.sizes(),
                " must be divisible by ", factor, " (2^stages)");
  }
  std::vector<at::Tensor> levels{stem->forward(x)};
  for (const auto& block : *down) levels.push_back(block->as<ResidualBlock>()->forward(levels.back()));
  if (position_proj) {
    at::Tensor& deepest = levels.back();  // [B, C, *s]
    const std::vector<int64_t> size(deepest.sizes().begin() + 2, deepest.sizes().end());
    const at::Tensor pe = position_proj->forward(
        sine_position_encoding(size, deepest.size(1), deepest.options()));  // [N, C]
    std::vector<int64_t> shape{1, deepest.size(1)};
    shape.insert(shape.end(), size.begin(), size.end());
    deepest = deepest + pe.t().reshape(shape);
  }
  return levels;
}

}  // namespace iris::models
