#include "models/sam2/memory_encoder.h"

namespace iris::models::sam2 {

MaskDownSamplerImpl::MaskDownSamplerImpl(const MaskDownSamplerOptions& o) : options(o) {
  TORCH_CHECK(o.stride > 1 && o.total_stride >= o.stride,
              "MaskDownSampler: need 1 < stride <= total_stride, got stride ", o.stride,
              " and total_stride ", o.total_stride);
  int64_t num_layers = 0;
  int64_t reached = 1;
  while (reached < o.total_stride) {
    reached *= o.stride;
    ++num_layers;
  }
  TORCH_CHECK(reached == o.total_stride, "MaskDownSampler: total_stride ", o.total_stride,
              " is not a power of stride ", o.stride);

  // Each step trades stride² of resolution for stride² more channels.
  encoder = torch::nn::Sequential();
  int64_t in_chans = 1;
  int64_t out_chans = 1;
  for (int64_t i = 0; i < num_layers; ++i) {
    out_chans = in_chans * o.stride * o.stride;
    encoder->push_back(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in_chans, out_chans, o.kernel_size)
                              .stride(o.stride)
                              .padding(o.padding)));
    encoder->push_back(LayerNorm2d(out_chans, 1e-6));
    // Registered as a module so that the Sequential indices equal the official ones.
    encoder->push_back(torch::nn::GELU());
    in_chans = out_chans;
  }
  encoder->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(out_chans, o.embed_dim, 1)));
  register_module("encoder", encoder);
}

at::Tensor MaskDownSamplerImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 1, "MaskDownSampler expects [B, 1, H, W], got ",
              x.sizes());
  return encoder->forward(x);
}

CXBlockImpl::CXBlockImpl(const CXBlockOptions& o) : options(o) {
  dwconv = register_module("dwconv",
                           torch::nn::Conv2d(torch::nn::Conv2dOptions(o.dim, o.dim, o.kernel_size)
                                                 .padding(o.padding)
                                                 .groups(o.use_dwconv ? o.dim : 1)));
  norm = register_module("norm", LayerNorm2d(o.dim, 1e-6));
  pwconv1 = register_module("pwconv1", torch::nn::Linear(o.dim, 4 * o.dim));
  pwconv2 = register_module("pwconv2", torch::nn::Linear(4 * o.dim, o.dim));
  if (o.layer_scale_init_value > 0.0) {
    gamma = register_parameter("gamma", torch::full({o.dim}, o.layer_scale_init_value));
  }
}

at::Tensor CXBlockImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.dim, "CXBlock expects [B, ", options.dim,
              ", H, W], got ", x.sizes());
  auto y = norm(dwconv(x)).permute({0, 2, 3, 1});  // [B, H, W, C]
  y = pwconv2(gelu_exact(pwconv1(y)));
  if (gamma.defined()) y = gamma * y;
  y = y.permute({0, 3, 1, 2});
  if (is_training() && options.drop_path > 0.0) {
    // Stochastic depth: drop the whole residual branch per sample, rescale the kept ones.
    const double keep = 1.0 - options.drop_path;
    auto mask = torch::empty({y.size(0), 1, 1, 1}, y.options()).bernoulli_(keep);
    if (keep > 0.0) mask.div_(keep);
    y = y * mask;
  }
  return x + y;
}

FuserImpl::FuserImpl(const FuserOptions& o) : options(o) {
  if (o.input_projection) {
    TORCH_CHECK(o.dim > 0, "Fuser: input_projection needs dim, got ", o.dim);
    proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.dim, o.dim, 1)));
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) layers->push_back(CXBlock(o.layer));
}

at::Tensor FuserImpl::forward(at::Tensor x) {
  if (proj) x = proj(x);
  for (const auto& layer : *layers) x = layer->as<CXBlockImpl>()->forward(x);
  return x;
}

MemoryEncoderImpl::MemoryEncoderImpl(const MemoryEncoderOptions& o) : options(o) {
  mask_downsampler = register_module("mask_downsampler", MaskDownSampler(o.mask_downsampler));
  pix_feat_proj = register_module(
      "pix_feat_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_dim, o.in_dim, 1)));
  fuser = register_module("fuser", Fuser(o.fuser));
  position_encoding =
      register_module("position_encoding", PositionEmbeddingSine(o.position_encoding));
  if (o.out_dim != o.in_dim) {
    out_proj = register_module("out_proj",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_dim, o.out_dim, 1)));
  }
}

MemoryEncoderOutput MemoryEncoderImpl::forward(const at::Tensor& pix_feat, const at::Tensor& masks,
                                               bool skip_mask_sigmoid) {
  TORCH_CHECK(pix_feat.dim() == 4 && pix_feat.size(1) == options.in_dim,
              "MemoryEncoder: pix_feat must be [B, ", options.in_dim, ", h, w], got ",
              pix_feat.sizes());
  TORCH_CHECK(masks.dim() == 4 && masks.size(0) == pix_feat.size(0) && masks.size(1) == 1,
              "MemoryEncoder: masks must be [", pix_feat.size(0), ", 1, H, W], got ",
              masks.sizes());
  // Sigmoid brings logits closer to the binary ground-truth masks seen in training.
  const auto mask_feat = mask_downsampler(skip_mask_sigmoid ? masks : torch::sigmoid(masks));
  TORCH_CHECK(mask_feat.size(2) == pix_feat.size(2) && mask_feat.size(3) == pix_feat.size(3),
              "MemoryEncoder: masks ", masks.sizes(), " downsample to ", mask_feat.sizes(),
              ", not to the grid of pix_feat ", pix_feat.sizes());

  // Features may have been offloaded to the CPU; the masks' device wins.
  auto x = pix_feat_proj(pix_feat.to(mask_feat.device())) + mask_feat;
  x = fuser(x);
  if (out_proj) x = out_proj(x);
  auto pos = position_encoding(x).to(x.scalar_type());
  return {x, pos};
}

}  // namespace iris::models::sam2
