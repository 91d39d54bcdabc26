#include "models/sam2/hiera.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/torch_compat.h"

namespace iris::models::sam2 {
namespace {

// [B, H, W, C] NHWC <-> [B, C, H, W] NCHW views.
at::Tensor to_nchw(const at::Tensor& x) {
  return x.permute({0, 3, 1, 2});
}
at::Tensor to_nhwc(const at::Tensor& x) {
  return x.permute({0, 2, 3, 1});
}

// Max-pools the spatial dims of a channels-last map: [B, H, W, C] -> [B, H / sh, W / sw, C].
at::Tensor pool_nhwc(const at::Tensor& x, const std::array<int64_t, 2>& stride) {
  return to_nhwc(at::max_pool2d(to_nchw(x), {stride[0], stride[1]}, {stride[0], stride[1]}));
}

int64_t round_up(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// [B, H, W, C] -> [B · nWin, ws, ws, C]; the grid is zero-padded at the bottom/right to a
// multiple of ws. The padding is not masked in attention (the official model attends to it).
at::Tensor window_partition(const at::Tensor& x, int64_t ws) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  const int64_t hp = round_up(h, ws), wp = round_up(w, ws);
  at::Tensor padded = x;
  if (hp != h || wp != w) padded = at::constant_pad_nd(x, {0, 0, 0, wp - w, 0, hp - h});
  return padded.view({b, hp / ws, ws, wp / ws, ws, c})
      .permute({0, 1, 3, 2, 4, 5})
      .reshape({-1, ws, ws, c});
}

// Inverse of window_partition for an h x w grid padded to (hp, wp): [B · nWin, ws, ws, C] ->
// [B, h, w, C].
at::Tensor window_unpartition(const at::Tensor& windows, int64_t ws, int64_t hp, int64_t wp,
                              int64_t h, int64_t w) {
  const int64_t b = windows.size(0) / ((hp / ws) * (wp / ws));
  at::Tensor x = windows.reshape({b, hp / ws, wp / ws, ws, ws, -1})
                     .permute({0, 1, 3, 2, 4, 5})
                     .reshape({b, hp, wp, -1});
  if (hp > h || wp > w) {
    using torch::indexing::Slice;
    x = x.index({Slice(), Slice(0, h), Slice(0, w)});
  }
  return x;
}

}  // namespace

// --- PatchEmbed ---------------------------------------------------------------------------------

PatchEmbedImpl::PatchEmbedImpl(int64_t embed_dim) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, embed_dim, 7).stride(4).padding(3)));
}

at::Tensor PatchEmbedImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "PatchEmbed expects [B, 3, H, W], got ", x.sizes());
  return to_nhwc(proj->forward(x));
}

// --- MultiScaleAttention ------------------------------------------------------------------------

MultiScaleAttentionImpl::MultiScaleAttentionImpl(const MultiScaleAttentionOptions& o) : options(o) {
  if (o.num_heads <= 0 || o.dim_out % o.num_heads != 0) {
    throw ConfigError("MultiScaleAttention: dim_out " + std::to_string(o.dim_out) +
                      " is not divisible by num_heads " + std::to_string(o.num_heads));
  }
  qkv = register_module("qkv", torch::nn::Linear(o.dim, 3 * o.dim_out));
  proj = register_module("proj", torch::nn::Linear(o.dim_out, o.dim_out));
}

at::Tensor MultiScaleAttentionImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) == options.dim, "MultiScaleAttention expects [N, h, w, ",
              options.dim, "], got ", x.sizes());
  const int64_t n = x.size(0), heads = options.num_heads;
  int64_t h = x.size(1), w = x.size(2);
  // Channel layout of qkv is [3][heads][head_dim].
  const auto parts = qkv->forward(x).reshape({n, h * w, 3, heads, -1}).unbind(2);
  at::Tensor q = parts[0];  // [N, h·w, heads, hd]
  if (options.q_stride[0] > 0) {
    q = pool_nhwc(q.reshape({n, h, w, -1}), options.q_stride);
    h = q.size(1);
    w = q.size(2);
    q = q.reshape({n, h * w, heads, -1});
  }
  const auto out = dot_product_attention(q.transpose(1, 2), parts[1].transpose(1, 2),
                                         parts[2].transpose(1, 2));  // [N, heads, h·w, hd]
  return proj->forward(out.transpose(1, 2).reshape({n, h, w, -1}));
}

// --- MultiScaleBlock ----------------------------------------------------------------------------

MultiScaleBlockImpl::MultiScaleBlockImpl(const MultiScaleBlockOptions& o) : options(o) {
  if (pooled() && o.dim == o.dim_out) {
    // The official block pools the shortcut only through the dim-changing projection.
    throw ConfigError("MultiScaleBlock: query pooling needs dim != dim_out, got dim " +
                      std::to_string(o.dim));
  }
  constexpr double kEps = 1e-6;
  norm1 = register_module("norm1",
                          torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim}).eps(kEps)));
  attn = register_module("attn", MultiScaleAttention(MultiScaleAttentionOptions{
                                     o.dim, o.dim_out, o.num_heads, o.q_stride}));
  norm2 = register_module("norm2",
                          torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim_out}).eps(kEps)));
  MlpOptions mlp_options;
  mlp_options.input_dim = o.dim_out;
  mlp_options.hidden_dim = static_cast<int64_t>(static_cast<double>(o.dim_out) * o.mlp_ratio);
  mlp_options.output_dim = o.dim_out;
  mlp_options.num_layers = 2;
  mlp_options.activation = Activation::kGelu;
  mlp = register_module("mlp", Mlp(mlp_options));
  if (o.dim != o.dim_out) proj = register_module("proj", torch::nn::Linear(o.dim, o.dim_out));
}

at::Tensor MultiScaleBlockImpl::drop_path(const at::Tensor& x) const {
  if (!is_training() || options.drop_path <= 0.0) return x;
  const double keep = 1.0 - options.drop_path;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  const auto mask = at::empty(shape, x.options()).bernoulli_(keep);
  return keep > 0.0 ? x * mask / keep : x * mask;
}

at::Tensor MultiScaleBlockImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) == options.dim, "MultiScaleBlock expects [B, H, W, ",
              options.dim, "], got ", x.sizes());
  at::Tensor shortcut = x;
  const at::Tensor xn = norm1->forward(x);
  if (proj) {
    // The shortcut of a stage entry is projected from the *normed* input, then pooled.
    shortcut = proj->forward(xn);
    if (pooled()) shortcut = pool_nhwc(shortcut, options.q_stride);
  }

  const int64_t ws = options.window_size;
  at::Tensor y = xn;
  int64_t hp = 0, wp = 0;
  if (ws > 0) {
    hp = round_up(xn.size(1), ws);
    wp = round_up(xn.size(2), ws);
    y = window_partition(xn, ws);  // [B · nWin, ws, ws, dim]
  }
  y = attn->forward(y);
  if (ws > 0) {
    // A pooled block partitions with the previous stage's window and unpartitions with the
    // pooled one, over the pooled grid.
    int64_t ws_out = ws, h = xn.size(1), w = xn.size(2);
    if (pooled()) {
      ws_out = ws / options.q_stride[0];
      h = shortcut.size(1);
      w = shortcut.size(2);
      hp = round_up(h, ws_out);
      wp = round_up(w, ws_out);
    }
    y = window_unpartition(y, ws_out, hp, wp, h, w);
  }
  at::Tensor out = shortcut + drop_path(y);
  return out + drop_path(mlp->forward(norm2->forward(out)));
}

// --- Hiera --------------------------------------------------------------------------------------

HieraImpl::HieraImpl(const HieraOptions& o) : options(o) {
  const auto num_stages = static_cast<int64_t>(o.stages.size());
  if (num_stages == 0 || o.window_spec.size() != o.stages.size()) {
    throw ConfigError("Hiera: window_spec needs one entry per stage (" +
                      std::to_string(num_stages) + " stages, " +
                      std::to_string(o.window_spec.size()) + " windows)");
  }
  if (o.q_pool < 0 || o.q_pool > num_stages - 1) {
    throw ConfigError("Hiera: q_pool must be in [0, " + std::to_string(num_stages - 1) + "], got " +
                      std::to_string(o.q_pool));
  }
  if (o.embed_dim <= 0 || o.num_heads <= 0 ||
      std::any_of(o.stages.begin(), o.stages.end(), [](int64_t s) { return s <= 0; })) {
    throw ConfigError("Hiera: embed_dim, num_heads and every stage depth must be positive");
  }
  int64_t end = -1;
  for (const int64_t s : o.stages) stage_ends_.push_back(end += s);
  const int64_t depth = end + 1;

  // Parameters first, then submodules: the official registration (and state-dict) order.
  pos_embed = register_parameter(
      "pos_embed", torch::zeros({1, o.embed_dim, o.window_pos_embed_bkg_spatial_size[0],
                                 o.window_pos_embed_bkg_spatial_size[1]}));
  pos_embed_window = register_parameter(
      "pos_embed_window", torch::zeros({1, o.embed_dim, o.window_spec[0], o.window_spec[0]}));
  patch_embed = register_module("patch_embed", PatchEmbed(o.embed_dim));

  // float32 linspace as the official stochastic-depth schedule computes it.
  const auto dpr = torch::linspace(0.0, o.drop_path_rate, depth, torch::kFloat32);
  auto contains = [](const std::vector<int64_t>& v, int64_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  blocks = register_module("blocks", torch::nn::ModuleList());
  int64_t dim = o.embed_dim, heads = o.num_heads;
  size_t stage = 0;
  for (int64_t i = 0; i < depth; ++i) {
    MultiScaleBlockOptions b;
    b.dim = dim;
    b.dim_out = dim;
    // The window lags by a block: a stage's first block still uses the previous stage's window.
    b.window_size = contains(o.global_att_blocks, i) ? 0 : o.window_spec[stage];
    if (contains(stage_ends_, i - 1)) {
      b.dim_out = static_cast<int64_t>(static_cast<double>(dim) * o.dim_mul);
      heads = static_cast<int64_t>(static_cast<double>(heads) * o.head_mul);
      ++stage;
    }
    b.num_heads = heads;
    b.drop_path = dpr[i].item<double>();
    const bool q_pool_block =
        stage > 0 && static_cast<int64_t>(stage) <= o.q_pool && i == stage_ends_[stage - 1] + 1;
    if (q_pool_block) b.q_stride = o.q_stride;
    blocks->push_back(MultiScaleBlock(b));
    dim = b.dim_out;
  }
}

std::vector<int64_t> HieraImpl::channel_list() const {
  std::vector<int64_t> dims;
  for (auto it = stage_ends_.rbegin(); it != stage_ends_.rend(); ++it) {
    dims.push_back(blocks->at<MultiScaleBlockImpl>(static_cast<size_t>(*it)).options.dim_out);
    if (!options.return_interm_layers) break;
  }
  return dims;
}

at::Tensor HieraImpl::pos_embed_for(int64_t h, int64_t w) {
  const int64_t wh = pos_embed_window.size(2), ww = pos_embed_window.size(3);
  TORCH_CHECK(h % wh == 0 && w % ww == 0, "Hiera: the patch grid ", h, "x", w,
              " must be a multiple of the window embedding ", wh, "x", ww,
              " (input sides a multiple of ", 4 * wh, ")");
  // A constant at inference: reuse it while the parameters are unchanged (copy_ bumps their
  // version, .to() changes their storage). Parameters created in InferenceMode have no version
  // counter, so nothing is cached for them.
  const bool cacheable =
      !at::GradMode::is_enabled() && !pos_embed.is_inference() && !pos_embed_window.is_inference();
  const std::array<int64_t, 2> versions =
      cacheable ? std::array<int64_t, 2>{pos_embed._version(), pos_embed_window._version()}
                : std::array<int64_t, 2>{-1, -1};
  const std::array<const void*, 2> data{pos_embed.data_ptr(), pos_embed_window.data_ptr()};
  if (cacheable && cached_pos_.defined() && cached_h_ == h && cached_w_ == w &&
      cached_versions_ == versions && cached_data_ == data &&
      cached_pos_.device() == pos_embed.device() &&
      cached_pos_.scalar_type() == pos_embed.scalar_type()) {
    return cached_pos_;
  }
  // Bicubic (A = -0.75, align_corners false) background plus the tiled window embedding.
  const at::Tensor background = at::upsample_bicubic2d(pos_embed, {h, w}, /*align_corners=*/false);
  const at::Tensor pos = to_nhwc(background + pos_embed_window.tile({1, 1, h / wh, w / ww}));
  if (cacheable) {
    cached_pos_ = pos;
    cached_h_ = h;
    cached_w_ = w;
    cached_versions_ = versions;
    cached_data_ = data;
  } else {
    cached_pos_ = at::Tensor();
  }
  return pos;  // [1, h, w, E]
}

std::vector<at::Tensor> HieraImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "Hiera expects [B, 3, H, W], got ", x.sizes());
  at::Tensor t = patch_embed->forward(x);  // [B, H/4, W/4, E]
  t = t + pos_embed_for(t.size(1), t.size(2));
  std::vector<at::Tensor> outputs;
  const int64_t last = stage_ends_.back();
  for (int64_t i = 0; i <= last; ++i) {
    t = blocks->at<MultiScaleBlockImpl>(static_cast<size_t>(i)).forward(t);
    const bool stage_end =
        std::find(stage_ends_.begin(), stage_ends_.end(), i) != stage_ends_.end();
    if (i == last || (stage_end && options.return_interm_layers)) outputs.push_back(to_nchw(t));
  }
  return outputs;
}

}  // namespace iris::models::sam2
