#include "models/iris/encoder.h"

namespace iris::models {

IrisEncoderImpl::IrisEncoderImpl(const IrisOptions& o) {
  stem = register_module("stem", ResidualBlock(o.spatial_dims, o.in_channels, o.channels(0), 1));
  down = register_module("down", torch::nn::ModuleList());
  for (int64_t l = 0; l < o.stages; ++l) {
    down->push_back(ResidualBlock(o.spatial_dims, o.channels(l), o.channels(l + 1), 2));
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
  return levels;
}

}  // namespace iris::models
