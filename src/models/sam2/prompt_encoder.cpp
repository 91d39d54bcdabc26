#include "models/sam2/prompt_encoder.h"

#include <cmath>

#include "models/sam2/common.h"

namespace iris::models::sam2 {

namespace {

// Labels of the point prompts: negative/positive clicks, then the two box corners.
constexpr int64_t kNumPointEmbeddings = 4;
constexpr int64_t kPaddingLabel = -1;

}  // namespace

PositionEmbeddingRandomImpl::PositionEmbeddingRandomImpl(int64_t num_pos_feats, double scale) {
  TORCH_CHECK(num_pos_feats > 0, "PositionEmbeddingRandom: num_pos_feats must be positive, got ",
              num_pos_feats);
  if (scale <= 0.0) scale = 1.0;
  positional_encoding_gaussian_matrix = register_buffer("positional_encoding_gaussian_matrix",
                                                        scale * torch::randn({2, num_pos_feats}));
}

at::Tensor PositionEmbeddingRandomImpl::encode(const at::Tensor& unit_coords) {
  TORCH_CHECK(unit_coords.size(-1) == 2, "PositionEmbeddingRandom: coords must end in 2, got ",
              unit_coords.sizes());
  const auto proj =
      2.0 * M_PI * torch::matmul(2.0 * unit_coords - 1.0, positional_encoding_gaussian_matrix);
  return torch::cat({torch::sin(proj), torch::cos(proj)}, -1);
}

at::Tensor PositionEmbeddingRandomImpl::forward(int64_t height, int64_t width) {
  const auto f32 = torch::TensorOptions()
                       .dtype(torch::kFloat32)
                       .device(positional_encoding_gaussian_matrix.device());
  // Cell centres, as the official cumsum - 0.5 over a grid of ones.
  const auto y = ((torch::arange(height, f32) + 0.5) / height).view({height, 1});
  const auto x = ((torch::arange(width, f32) + 0.5) / width).view({1, width});
  const auto xy = torch::stack({x.expand({height, width}), y.expand({height, width})}, -1);
  return encode(xy).permute({2, 0, 1});  // [C, h, w]
}

at::Tensor PositionEmbeddingRandomImpl::forward_with_coords(const at::Tensor& coords,
                                                            std::array<int64_t, 2> image_size) {
  TORCH_CHECK(coords.dim() == 3 && coords.size(2) == 2,
              "PositionEmbeddingRandom: coords must be [B, N, 2], got ", coords.sizes());
  const auto wh =
      torch::tensor({static_cast<double>(image_size[1]), static_cast<double>(image_size[0])},
                    coords.options().dtype(torch::kFloat32));
  return encode(coords.to(torch::kFloat32) / wh);
}

PromptEncoderImpl::PromptEncoderImpl(const PromptEncoderOptions& o) : options(o) {
  TORCH_CHECK(o.embed_dim > 0 && o.embed_dim % 2 == 0,
              "PromptEncoder: embed_dim must be positive and even, got ", o.embed_dim);
  TORCH_CHECK(o.mask_in_chans >= 4 && o.mask_in_chans % 4 == 0,
              "PromptEncoder: mask_in_chans must be a positive multiple of 4, got ",
              o.mask_in_chans);
  pe_layer_ = register_module("pe_layer", PositionEmbeddingRandom(o.embed_dim / 2));
  point_embeddings_ = register_module("point_embeddings", torch::nn::ModuleList());
  for (int64_t i = 0; i < kNumPointEmbeddings; ++i) {
    point_embeddings_->push_back(torch::nn::Embedding(1, o.embed_dim));
  }
  not_a_point_embed_ = register_module("not_a_point_embed", torch::nn::Embedding(1, o.embed_dim));

  const int64_t hidden = o.mask_in_chans / 4;
  using torch::nn::Conv2dOptions;
  mask_downscaling_ = register_module(
      "mask_downscaling",
      torch::nn::Sequential(torch::nn::Conv2d(Conv2dOptions(1, hidden, 2).stride(2)),
                            LayerNorm2d(hidden), torch::nn::GELU(),
                            torch::nn::Conv2d(Conv2dOptions(hidden, o.mask_in_chans, 2).stride(2)),
                            LayerNorm2d(o.mask_in_chans), torch::nn::GELU(),
                            torch::nn::Conv2d(Conv2dOptions(o.mask_in_chans, o.embed_dim, 1))));
  no_mask_embed_ = register_module("no_mask_embed", torch::nn::Embedding(1, o.embed_dim));
}

at::Tensor PromptEncoderImpl::get_dense_pe() {
  const auto& g = pe_layer_->positional_encoding_gaussian_matrix;
  if (!dense_pe_.defined() || dense_pe_source_ != g.data_ptr() ||
      dense_pe_version_ != g._version() || dense_pe_.device() != g.device()) {
    dense_pe_ = pe_layer_->forward(options.image_embedding_size[0], options.image_embedding_size[1])
                    .unsqueeze(0)
                    .contiguous();
    dense_pe_source_ = g.data_ptr();
    dense_pe_version_ = g._version();
  }
  return dense_pe_;
}

at::Tensor PromptEncoderImpl::embed_points(at::Tensor coords, at::Tensor labels, bool pad) {
  coords = coords.to(torch::kFloat32) + 0.5;  // pixel centres
  if (pad) {
    // The padding point is appended after the shift: it sits at (0, 0).
    coords = torch::cat({coords, torch::zeros({coords.size(0), 1, 2}, coords.options())}, 1);
    labels =
        torch::cat({labels, torch::full({labels.size(0), 1}, kPaddingLabel, labels.options())}, 1);
  }
  auto embedding = pe_layer_->forward_with_coords(coords, options.input_image_size);
  const auto is = [&](int64_t label) { return (labels == label).unsqueeze(-1); };
  embedding = torch::where(is(kPaddingLabel),
                           torch::zeros_like(embedding) + not_a_point_embed_->weight, embedding);
  for (int64_t i = 0; i < kNumPointEmbeddings; ++i) {
    const auto& w = point_embeddings_[i]->as<torch::nn::EmbeddingImpl>()->weight;
    embedding = torch::where(is(i), embedding + w, embedding);
  }
  return embedding;
}

at::Tensor PromptEncoderImpl::embed_boxes(const at::Tensor& boxes) {
  const auto corners = (boxes.to(torch::kFloat32) + 0.5).reshape({-1, 2, 2});
  const auto embedding = pe_layer_->forward_with_coords(corners, options.input_image_size);
  const auto& w2 = point_embeddings_[2]->as<torch::nn::EmbeddingImpl>()->weight;
  const auto& w3 = point_embeddings_[3]->as<torch::nn::EmbeddingImpl>()->weight;
  return embedding + torch::cat({w2, w3}, 0).unsqueeze(0);
}

PromptEmbeddings PromptEncoderImpl::forward(const std::optional<at::Tensor>& point_coords,
                                            const std::optional<at::Tensor>& point_labels,
                                            const std::optional<at::Tensor>& boxes,
                                            const std::optional<at::Tensor>& masks) {
  const bool have_points = point_coords.has_value() && point_coords->defined();
  const bool have_labels = point_labels.has_value() && point_labels->defined();
  const bool have_boxes = boxes.has_value() && boxes->defined();
  const bool have_masks = masks.has_value() && masks->defined();
  TORCH_CHECK(have_points == have_labels,
              "PromptEncoder: point_coords and point_labels must be given together");
  const auto [h, w] = options.image_embedding_size;
  const int64_t c = options.embed_dim;

  int64_t batch = 1;
  if (have_points) {
    TORCH_CHECK(point_coords->dim() == 3 && point_coords->size(2) == 2,
                "PromptEncoder: point_coords must be [B, N, 2], got ", point_coords->sizes());
    TORCH_CHECK(
        point_labels->dim() == 2 && point_labels->sizes() == point_coords->sizes().slice(0, 2),
        "PromptEncoder: point_labels must be [B, N] = ", point_coords->sizes().slice(0, 2),
        ", got ", point_labels->sizes());
    batch = point_coords->size(0);
  }
  if (have_boxes) {
    TORCH_CHECK(boxes->dim() >= 2 && boxes->size(-1) == 4 && boxes->numel() / 4 == boxes->size(0),
                "PromptEncoder: boxes must be [B, 4] xyxy, got ", boxes->sizes());
    TORCH_CHECK(!have_points || boxes->size(0) == batch, "PromptEncoder: ", boxes->size(0),
                " boxes for a batch of ", batch, " point sets");
    if (!have_points) batch = boxes->size(0);
  }
  if (have_masks) {
    TORCH_CHECK(masks->dim() == 4 && masks->size(1) == 1 && masks->size(2) == 4 * h &&
                    masks->size(3) == 4 * w,
                "PromptEncoder: masks must be [B, 1, ", 4 * h, ", ", 4 * w, "], got ",
                masks->sizes());
    if (!have_points && !have_boxes) batch = masks->size(0);
  }

  const auto& anchor = not_a_point_embed_->weight;
  auto sparse = torch::empty({batch, 0, c}, anchor.options());
  if (have_points) {
    sparse = torch::cat({sparse, embed_points(*point_coords, *point_labels, !have_boxes)}, 1);
  }
  if (have_boxes) sparse = torch::cat({sparse, embed_boxes(*boxes)}, 1);

  at::Tensor dense;
  if (have_masks) {
    dense = mask_downscaling_->forward(*masks);
  } else {
    dense = no_mask_embed_->weight.reshape({1, -1, 1, 1}).expand({batch, -1, h, w});
  }
  return {sparse, dense};
}

}  // namespace iris::models::sam2
