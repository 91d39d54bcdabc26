#include "models/sam2/image_encoder.h"

#include <sstream>

#include "core/error.h"

namespace iris::models::sam2 {
namespace {

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << ']';
  return os.str();
}

}  // namespace

ImageEncoderImpl::ImageEncoderImpl(const ImageEncoderOptions& o) : options(o) {
  trunk = register_module("trunk", Hiera(o.trunk));
  neck = register_module("neck", FpnNeck(o.neck));
  const auto channels = trunk->channel_list();
  if (channels != o.neck.backbone_channel_list) {
    throw ConfigError("ImageEncoder: trunk channels " + join(channels) +
                      " differ from the neck's backbone_channel_list " +
                      join(o.neck.backbone_channel_list));
  }
  if (o.scalp < 0 || o.scalp >= static_cast<int64_t>(channels.size())) {
    throw ConfigError("ImageEncoder: scalp must be in [0, " + std::to_string(channels.size() - 1) +
                      "], got " + std::to_string(o.scalp));
  }
}

ImageEncoderOutput ImageEncoderImpl::forward(const at::Tensor& sample) {
  TORCH_CHECK(sample.dim() == 4 && sample.size(1) == 3, "ImageEncoder expects [B, 3, H, W], got ",
              sample.sizes());
  auto [features, pos] = neck->forward(trunk->forward(sample));
  // scalp drops the lowest-resolution levels (the stride-32 map in the official configs).
  features.resize(features.size() - static_cast<size_t>(options.scalp));
  pos.resize(pos.size() - static_cast<size_t>(options.scalp));
  ImageEncoderOutput out;
  out.vision_features = features.back();
  out.vision_pos_enc = std::move(pos);
  out.backbone_fpn = std::move(features);
  return out;
}

ImageEncoderOptions official_image_encoder_options(const std::string& size) {
  ImageEncoderOptions o;
  HieraOptions& t = o.trunk;  // defaults are base_plus apart from embed_dim and num_heads
  if (size == "tiny" || size == "t") {
    t.embed_dim = 96;
    t.num_heads = 1;
    t.stages = {1, 2, 7, 2};
    t.global_att_blocks = {5, 7, 9};
    t.window_pos_embed_bkg_spatial_size = {7, 7};
  } else if (size == "small" || size == "s") {
    t.embed_dim = 96;
    t.num_heads = 1;
    t.stages = {1, 2, 11, 2};
    t.global_att_blocks = {7, 10, 13};
    t.window_pos_embed_bkg_spatial_size = {7, 7};
  } else if (size == "base_plus" || size == "b+") {
    t.embed_dim = 112;
    t.num_heads = 2;
  } else if (size == "large" || size == "l") {
    t.embed_dim = 144;
    t.num_heads = 2;
    t.stages = {2, 6, 36, 4};
    t.global_att_blocks = {23, 33, 43};
    t.window_pos_embed_bkg_spatial_size = {7, 7};
    t.window_spec = {8, 4, 16, 8};
  } else {
    throw ConfigError("unknown SAM2 size '" + size +
                      "' (expected tiny, small, base_plus or large)");
  }
  FpnNeckOptions& n = o.neck;
  n.position_encoding = PositionEmbeddingSineOptions{256, 10000.0, true, 0.0};
  n.d_model = 256;
  n.backbone_channel_list = {8 * t.embed_dim, 4 * t.embed_dim, 2 * t.embed_dim, t.embed_dim};
  n.fpn_top_down_levels = {2, 3};
  n.fpn_interp_model = "nearest";
  o.scalp = 1;
  return o;
}

}  // namespace iris::models::sam2
