// SAM2's memory attention: the current frame's features attend to themselves and to the memory
// bank (past frames' encoded masks and object pointers) with rotary position encoding.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <string>

#include "models/sam2/attention.h"

namespace iris::models::sam2 {

struct RoPEAttentionOptions {
  AttentionOptions attention;
  double rope_theta = 10000.0;
  bool rope_k_repeat = false;           // repeat the query table along the keys (memories)
  std::array<int64_t, 2> feat_sizes{64, 64};  // (w, h) of the query grid; recomputed if it differs
};

// Keys as Attention: q_proj, k_proj, v_proj, out_proj (the RoPE tables are not stored).
class RoPEAttentionImpl : public torch::nn::Module {
 public:
  explicit RoPEAttentionImpl(const RoPEAttentionOptions& options);
  // q: [B, Nq, C] on a square grid; k, v: [B, Nk, kv_in_dim]. The last `num_k_exclude_rope`
  // keys (object pointers) are not rotated.
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     int64_t num_k_exclude_rope = 0);

  RoPEAttentionOptions options;
};
TORCH_MODULE(RoPEAttention);

struct MemoryAttentionLayerOptions {
  std::string activation = "relu";
  RoPEAttentionOptions cross_attention;
  int64_t d_model = 256;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  bool pos_enc_at_attn = false;
  bool pos_enc_at_cross_attn_keys = true;
  bool pos_enc_at_cross_attn_queries = false;
  RoPEAttentionOptions self_attention;
};

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
};
TORCH_MODULE(MemoryAttention);

}  // namespace iris::models::sam2
