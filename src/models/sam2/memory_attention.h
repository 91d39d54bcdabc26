// SAM2's memory attention: the current frame's features attend to themselves and to the memory
// bank (past frames' encoded masks and object pointers) with rotary position encoding.
#pragma once

#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "models/sam2/attention.h"
#include "models/sam2/common.h"

namespace iris::models::sam2 {

struct RoPEAttentionOptions {
  AttentionOptions attention;
  double rope_theta = 10000.0;
  bool rope_k_repeat = false;                 // repeat the query table along the keys (memories)
  std::array<int64_t, 2> feat_sizes{64, 64};  // (w, h) of the query grid; recomputed if it differs
};

// Keys as Attention: q_proj, k_proj, v_proj, out_proj (the RoPE tables are not stored).
// Derives from Attention as the official class does, reusing its projections and helpers;
// `options` here shadows AttentionImpl::options (reach that one as AttentionImpl::options).
class RoPEAttentionImpl : public AttentionImpl {
 public:
  explicit RoPEAttentionImpl(const RoPEAttentionOptions& options);
  // q: [B, Nq, C] on a square grid; k, v: [B, Nk, kv_in_dim]. The last `num_k_exclude_rope`
  // keys (object pointers) are not rotated.
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     int64_t num_k_exclude_rope = 0);

  // Rotates x: [B, heads, n * Nq, head_dim] (n > 1 only with rope_k_repeat) by the table of a
  // query length Nq, in float32; returns x's dtype.
  at::Tensor apply_rope(const at::Tensor& x, int64_t query_len);

  RoPEAttentionOptions options;

 private:
  struct RopeTable {
    // [w * h, head_dim] float32, one value per channel: pairs of the x frequencies, then of
    // the y frequencies; `sin` is negated on the first channel of each pair.
    at::Tensor cos, sin;
  };
  const RopeTable& rope_table(int64_t query_len, const c10::Device& device);

  // The grid the table is for: feat_sizes until a query of another length arrives, then the
  // square grid of that length (the official module keeps the recomputed table too).
  std::array<int64_t, 2> rope_grid_{0, 0};
  std::optional<c10::Device> table_device_;
  std::array<int64_t, 2> table_grid_{0, 0};
  RopeTable table_;
};
TORCH_MODULE(RoPEAttention);

struct MemoryAttentionLayerOptions {
  std::string activation = "relu";  // "relu" or "gelu"
  RoPEAttentionOptions cross_attention;
  int64_t d_model = 256;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  bool pos_enc_at_attn = false;
  bool pos_enc_at_cross_attn_keys = true;
  bool pos_enc_at_cross_attn_queries = false;
  RoPEAttentionOptions self_attention;
};

// One pre-norm layer: RoPE self-attention, RoPE cross-attention to the memory, FFN.
// Keys: self_attn, cross_attn_image, linear1, linear2, norm1, norm2, norm3.
class MemoryAttentionLayerImpl : public torch::nn::Module {
 public:
  explicit MemoryAttentionLayerImpl(const MemoryAttentionLayerOptions& options);
  // tgt, query_pos: [B, Nq, d_model]; memory, pos: [B, Nk, mem_dim] (batch first). A position
  // tensor may be undefined when the options do not use it.
  at::Tensor forward(const at::Tensor& tgt, const at::Tensor& memory, const at::Tensor& pos,
                     const at::Tensor& query_pos, int64_t num_k_exclude_rope = 0);

  MemoryAttentionLayerOptions options;
  RoPEAttention self_attn{nullptr}, cross_attn_image{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};

 private:
  at::Tensor dropout(const at::Tensor& x);
  Activation activation_ = Activation::kRelu;
};
TORCH_MODULE(MemoryAttentionLayer);

struct MemoryAttentionOptions {
  int64_t d_model = 256;
  bool pos_enc_at_input = true;
  MemoryAttentionLayerOptions layer;
  int64_t num_layers = 4;
  bool batch_first = true;
};

// Keys: layers.{i}.{self_attn,cross_attn_image,linear1,linear2,norm1,norm2,norm3}, norm.
class MemoryAttentionImpl : public torch::nn::Module {
 public:
  explicit MemoryAttentionImpl(const MemoryAttentionOptions& options);
  // Sequence-first, as the official module: curr, curr_pos: [Nq, B, d_model];
  // memory, memory_pos: [Nk, B, mem_dim]; the last num_obj_ptr_tokens memory tokens are object
  // pointers (no RoPE). -> [Nq, B, d_model]
  at::Tensor forward(const at::Tensor& curr, const at::Tensor& memory, const at::Tensor& curr_pos,
                     const at::Tensor& memory_pos, int64_t num_obj_ptr_tokens = 0);

  MemoryAttentionOptions options;
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(MemoryAttention);

}  // namespace iris::models::sam2
