#include "models/sam2/memory_attention.h"

#include <cmath>

#include "core/error.h"

namespace iris::models::sam2 {

RoPEAttentionImpl::RoPEAttentionImpl(const RoPEAttentionOptions& o)
    : AttentionImpl(o.attention), options(o), rope_grid_(o.feat_sizes) {
  const int64_t head_dim = internal_dim / AttentionImpl::options.num_heads;
  TORCH_CHECK(head_dim % 4 == 0, "RoPEAttention: the head dim ", head_dim,
              " must be a multiple of 4 (x and y halves of complex pairs)");
  TORCH_CHECK(o.feat_sizes[0] > 0 && o.feat_sizes[1] > 0, "RoPEAttention: bad feat_sizes (",
              o.feat_sizes[0], ", ", o.feat_sizes[1], ")");
  // The official options copy carries the base options; keep one source of truth for kv_in_dim.
  options.attention = AttentionImpl::options;
}

const RoPEAttentionImpl::RopeTable& RoPEAttentionImpl::rope_table(int64_t query_len,
                                                                  const c10::Device& device) {
  if (rope_grid_[0] * rope_grid_[1] != query_len) {
    const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(query_len))));
    TORCH_CHECK(side * side == query_len, "RoPEAttention: ", query_len,
                " query tokens are not a square grid and differ from feat_sizes (",
                options.feat_sizes[0], ", ", options.feat_sizes[1], ")");
    rope_grid_ = {side, side};
  }
  if (table_device_ && *table_device_ == device && table_grid_ == rope_grid_) return table_;

  // Built on the CPU in float32 like the official table, then moved, so every device sees the
  // same angles.
  const int64_t dim = internal_dim / AttentionImpl::options.num_heads;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const auto exponents =
      torch::arange(0, dim, 4).slice(0, 0, dim / 4).to(torch::kFloat32) / static_cast<double>(dim);
  const auto freqs = torch::pow(options.rope_theta, exponents).reciprocal();  // [dim / 4]
  const int64_t w = rope_grid_[0];
  const int64_t h = rope_grid_[1];
  const auto t = torch::arange(w * h, f32);
  const auto t_x = torch::remainder(t, static_cast<double>(w));
  const auto t_y = torch::floor_divide(t, static_cast<double>(w));
  const auto angles = torch::cat({torch::outer(t_x, freqs), torch::outer(t_y, freqs)}, 1);
  // Each angle serves a channel pair, so both channels get its cos; the sin carries the sign of
  // the complex product: (re, im) -> (re·cos - im·sin, im·cos + re·sin).
  const auto sign = torch::tensor({-1.0f, 1.0f});
  table_.cos = angles.cos().unsqueeze(-1).expand({-1, -1, 2}).flatten(1).to(device);
  table_.sin = (angles.sin().unsqueeze(-1) * sign).flatten(1).to(device);
  table_grid_ = rope_grid_;
  table_device_ = device;
  return table_;
}

at::Tensor RoPEAttentionImpl::apply_rope(const at::Tensor& x, int64_t query_len) {
  TORCH_CHECK(x.dim() == 4 && query_len > 0 && x.size(2) % query_len == 0,
              "RoPEAttention: cannot rotate ", x.sizes(), " by a table of ", query_len,
              " positions");
  const auto& table = rope_table(query_len, x.device());
  const int64_t repeats = x.size(2) / query_len;
  const int64_t dim = x.size(3);
  // Viewing the sequence as [repeats, query_len] reuses the query table for every memory frame.
  const auto xf = x.to(torch::kFloat32).reshape({x.size(0), x.size(1), repeats, query_len, dim});
  // (re, im) of each adjacent channel pair swapped to (im, re).
  const auto swapped = xf.reshape({-1, dim / 2, 2}).flip({-1}).reshape(xf.sizes());
  return torch::addcmul(xf * table.cos, swapped, table.sin).reshape(x.sizes()).to(x.scalar_type());
}

at::Tensor RoPEAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      int64_t num_k_exclude_rope) {
  const auto& base = AttentionImpl::options;
  TORCH_CHECK(q.dim() == 3 && q.size(2) == base.embedding_dim, "RoPEAttention: q must be [B, N, ",
              base.embedding_dim, "], got ", q.sizes());
  TORCH_CHECK(k.dim() == 3 && k.size(2) == base.kv_in_dim && v.sizes() == k.sizes() &&
                  k.size(0) == q.size(0),
              "RoPEAttention: k and v must be [", q.size(0), ", N, ", base.kv_in_dim, "], got ",
              k.sizes(), " and ", v.sizes());
  const int64_t nq = q.size(1);
  const int64_t nk = k.size(1);
  TORCH_CHECK(num_k_exclude_rope >= 0 && num_k_exclude_rope <= nk,
              "RoPEAttention: num_k_exclude_rope ", num_k_exclude_rope, " out of [0, ", nk, "]");
  const int64_t num_k_rope = nk - num_k_exclude_rope;
  // As the official module: other key counts need rope_k_repeat, and then the rotated keys
  // cover whole query grids (one per memory frame).
  if (options.rope_k_repeat) {
    TORCH_CHECK(num_k_rope % nq == 0, "RoPEAttention: ", num_k_rope,
                " rotated keys are not a multiple of the ", nq, " queries");
  } else {
    TORCH_CHECK(nk == nq && (num_k_rope == 0 || num_k_rope == nq), "RoPEAttention: ", nk, " keys (",
                num_k_rope, " rotated) for ", nq, " queries need rope_k_repeat");
  }

  auto qh = apply_rope(separate_heads(q_proj(q)), nq);  // [B, heads, Nq, head_dim]
  auto kh = separate_heads(k_proj(k));                  // [B, heads, Nk, head_dim]
  const auto vh = separate_heads(v_proj(v));
  if (num_k_rope > 0) {
    // Object-pointer tokens at the end have no grid position and stay unrotated.
    auto rotated = apply_rope(kh.slice(2, 0, num_k_rope), nq);
    kh = num_k_exclude_rope > 0 ? torch::cat({rotated, kh.slice(2, num_k_rope)}, 2) : rotated;
  }
  return out_proj(recombine_heads(attend(qh, kh, vh)));
}

MemoryAttentionLayerImpl::MemoryAttentionLayerImpl(const MemoryAttentionLayerOptions& o)
    : options(o) {
  if (o.activation == "relu") {
    activation_ = Activation::kRelu;
  } else if (o.activation == "gelu") {
    activation_ = Activation::kGelu;
  } else {
    throw ConfigError("memory attention: activation must be relu or gelu, got \"" + o.activation +
                      "\"");
  }
  self_attn = register_module("self_attn", RoPEAttention(o.self_attention));
  cross_attn_image = register_module("cross_attn_image", RoPEAttention(o.cross_attention));
  linear1 = register_module("linear1", torch::nn::Linear(o.d_model, o.dim_feedforward));
  linear2 = register_module("linear2", torch::nn::Linear(o.dim_feedforward, o.d_model));
  const auto ln = torch::nn::LayerNormOptions({o.d_model}).eps(1e-5);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  norm3 = register_module("norm3", torch::nn::LayerNorm(ln));
}

at::Tensor MemoryAttentionLayerImpl::dropout(const at::Tensor& x) {
  return options.dropout > 0.0 ? torch::dropout(x, options.dropout, is_training()) : x;
}

at::Tensor MemoryAttentionLayerImpl::forward(const at::Tensor& tgt, const at::Tensor& memory,
                                             const at::Tensor& pos, const at::Tensor& query_pos,
                                             int64_t num_k_exclude_rope) {
  const bool need_query_pos = options.pos_enc_at_attn || options.pos_enc_at_cross_attn_queries;
  TORCH_CHECK(!need_query_pos || query_pos.defined(),
              "MemoryAttentionLayer: query_pos is required by the options");
  TORCH_CHECK(!options.pos_enc_at_cross_attn_keys || pos.defined(),
              "MemoryAttentionLayer: pos (memory positions) is required by the options");

  auto x = tgt;
  auto t2 = norm1(x);
  const auto qk = options.pos_enc_at_attn ? t2 + query_pos : t2;
  x = x + dropout(self_attn(qk, qk, t2));

  t2 = norm2(x);
  x = x + dropout(cross_attn_image(options.pos_enc_at_cross_attn_queries ? t2 + query_pos : t2,
                                   options.pos_enc_at_cross_attn_keys ? memory + pos : memory,
                                   memory, num_k_exclude_rope));

  t2 = linear1(norm3(x));
  t2 = activation_ == Activation::kRelu ? torch::relu(t2) : gelu_exact(t2);
  return x + dropout(linear2(dropout(t2)));
}

MemoryAttentionImpl::MemoryAttentionImpl(const MemoryAttentionOptions& o) : options(o) {
  TORCH_CHECK(o.layer.d_model == o.d_model, "MemoryAttention: layer d_model ", o.layer.d_model,
              " differs from d_model ", o.d_model);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i) layers->push_back(MemoryAttentionLayer(o.layer));
  norm = register_module("norm",
                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model}).eps(1e-5)));
}

at::Tensor MemoryAttentionImpl::forward(const at::Tensor& curr, const at::Tensor& memory,
                                        const at::Tensor& curr_pos, const at::Tensor& memory_pos,
                                        int64_t num_obj_ptr_tokens) {
  TORCH_CHECK(curr.dim() == 3 && curr.size(2) == options.d_model,
              "MemoryAttention: curr must be [Nq, B, ", options.d_model, "], got ", curr.sizes());
  TORCH_CHECK(memory.dim() == 3 && memory.size(1) == curr.size(1),
              "MemoryAttention: memory must be [Nk, ", curr.size(1), ", mem_dim], got ",
              memory.sizes());
  TORCH_CHECK(!curr_pos.defined() || curr_pos.sizes() == curr.sizes(), "MemoryAttention: curr_pos ",
              curr_pos.sizes(), " must match curr ", curr.sizes());
  TORCH_CHECK(!memory_pos.defined() || memory_pos.sizes() == memory.sizes(),
              "MemoryAttention: memory_pos ", memory_pos.sizes(), " must match memory ",
              memory.sizes());

  auto output = curr;
  if (options.pos_enc_at_input && curr_pos.defined()) output = output + 0.1 * curr_pos;

  auto to_layer_layout = [&](const at::Tensor& t) {
    return options.batch_first && t.defined() ? t.transpose(0, 1) : t;
  };
  output = to_layer_layout(output);  // [B, Nq, d_model]
  const auto query_pos = to_layer_layout(curr_pos);
  const auto mem = to_layer_layout(memory);  // [B, Nk, mem_dim]
  const auto mem_pos = to_layer_layout(memory_pos);
  for (const auto& layer : *layers) {
    output = layer->as<MemoryAttentionLayerImpl>()->forward(output, mem, mem_pos, query_pos,
                                                            num_obj_ptr_tokens);
  }
  return to_layer_layout(norm(output));  // [Nq, B, d_model]
}

}  // namespace iris::models::sam2
