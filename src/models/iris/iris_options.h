// Sizes of the IRIS network (2D or 3D; tiny to paper size by config).
#pragma once

#include <cstdint>

namespace iris::models {

struct IrisOptions {
  int64_t spatial_dims = 2;    // 2: slices [B, C, H, W]; 3: volumes [B, C, D, H, W]
  int64_t in_channels = 1;
  int64_t base_channels = 16;  // channels at full resolution; doubled at each stage
  int64_t stages = 4;          // stride-2 downsamplings; inputs must be divisible by 2^stages
  int64_t query_tokens = 10;   // m contextual tokens per class
  int64_t heads = 8;
  int64_t decoder_layers = 2;  // bidirectional attention layers
  bool deep_supervision = false;
  // A fixed sine position encoding (learned projection) added to the deepest features, so task
  // tokens and query features can say *where* as well as *what*.
  bool position_encoding = true;
  // Per-class decoding: after the joint attention, the upsampling path runs once per class (batched
  // as B·K), modulated at every stage by that class's summary (FiLM).
  bool class_film = true;
  // Reference prior (0: off): P random Fourier features of the voxel position, pooled over each
  // reference mask, give a kernel-smoothed copy of the mask that the decoder adds to its logits
  // (appearance logits gated from 0). Only meaningful when reference and query share a frame (slices
  // of one study, registered volumes); stored as extra rows of the task embedding.
  int64_t prior_features = 0;
  double prior_frequency = 6.0;  // frequencies ~ N(0, f²) per axis over coordinates in [-1, 1]
  // The prior's coordinates follow each image's foreground frame (position.h: foreground_frame) by
  // a learned amount per axis (parameter prior_frame_mix, 0 at initialisation: the grid), so a
  // structure keeps its place relative to the anatomy when the query's field of view is shifted or
  // scaled against the reference's (other slices of a brain, other patients).
  bool prior_frame = false;
  double prior_frame_init = 0.0;  // the mix at initialisation (1: start in the foreground frame)
  // The foreground frame turns with the anatomy's principal axes too (a rotated query meets the
  // reference's coordinates).
  bool prior_frame_axes = false;

  int64_t channels(int64_t level) const { return base_channels << level; }
  int64_t feature_channels() const { return channels(stages); }
  int64_t feature_rows() const { return query_tokens + 1; }  // attention tokens per class
  int64_t prior_rows() const {
    return (prior_features + feature_channels() - 1) / feature_channels();
  }
  // Rows of the task embedding per class: foreground, m context tokens, then the prior rows.
  int64_t tokens_per_class() const { return feature_rows() + prior_rows(); }
};

}  // namespace iris::models
