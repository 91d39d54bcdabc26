#include "models/sam2/sam2_model.h"

#include <algorithm>
#include <cmath>
#include <deque>

namespace iris::models::sam2 {
namespace {


at::Tensor trunc_normal(std::vector<int64_t> shape, double std) {
  // Initial values only matter for training from scratch; checkpoints overwrite them.
  return (torch::randn(shape) * std).clamp_(-2.0, 2.0);
}

// [HW, B, C] -> [B, C, H, W]
at::Tensor seq_to_map(const at::Tensor& x, const std::array<int64_t, 2>& size) {
  return x.permute({1, 2, 0}).reshape({x.size(1), x.size(2), size[0], size[1]});
}

}  // namespace

const FrameOutput* ObjectMemory::find_cond(int64_t frame) const {
  for (const auto& [t, out] : cond_frame_outputs) {
    if (t == frame) return &out;
  }
  return nullptr;
}

FrameOutput* ObjectMemory::find_cond(int64_t frame) {
  for (auto& [t, out] : cond_frame_outputs) {
    if (t == frame) return &out;
  }
  return nullptr;
}

void ObjectMemory::set_cond(int64_t frame, FrameOutput out) {
  if (auto* existing = find_cond(frame)) {
    *existing = std::move(out);
  } else {
    cond_frame_outputs.emplace_back(frame, std::move(out));
  }
}

bool ObjectMemory::erase_cond(int64_t frame) {
  auto it = std::find_if(cond_frame_outputs.begin(), cond_frame_outputs.end(),
                         [&](const auto& p) { return p.first == frame; });
  if (it == cond_frame_outputs.end()) return false;
  cond_frame_outputs.erase(it);
  return true;
}

at::Tensor get_1d_sine_pe(const at::Tensor& pos, int64_t dim, double temperature) {
  const int64_t pe_dim = dim / 2;
  auto dim_t = torch::arange(pe_dim, pos.options().dtype(torch::kFloat32));
  dim_t = torch::pow(temperature, 2.0 * torch::floor_divide(dim_t, 2) / pe_dim);
  const auto e = pos.to(torch::kFloat32).unsqueeze(-1) / dim_t;
  return torch::cat({e.sin(), e.cos()}, -1);
}

at::Tensor fill_holes_in_mask_scores(const at::Tensor& mask, int64_t max_area) {
  TORCH_CHECK(max_area > 0, "fill_holes_in_mask_scores: max_area must be positive");
  TORCH_CHECK(mask.dim() == 4 && mask.size(1) == 1, "fill_holes_in_mask_scores expects [N, 1, H, W]");
  const auto bg = (mask <= 0).to(torch::kCPU).contiguous();
  const int64_t n = bg.size(0), h = bg.size(2), w = bg.size(3);
  auto hole = torch::zeros({n, 1, h, w}, torch::kBool);
  const bool* b = bg.data_ptr<bool>();
  bool* out = hole.data_ptr<bool>();
  std::vector<int32_t> label(static_cast<size_t>(h * w));
  std::vector<int64_t> component;
  for (int64_t i = 0; i < n; ++i) {
    const bool* bi = b + i * h * w;
    std::fill(label.begin(), label.end(), 0);
    int32_t next = 0;
    for (int64_t start = 0; start < h * w; ++start) {
      if (!bi[start] || label[start]) continue;
      ++next;
      component.clear();
      component.push_back(start);
      label[start] = next;
      for (size_t k = 0; k < component.size(); ++k) {
        const int64_t p = component[k], y = p / w, x = p % w;
        for (int64_t dy = -1; dy <= 1; ++dy) {
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t yy = y + dy, xx = x + dx;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
            const int64_t q = yy * w + xx;
            if (bi[q] && !label[q]) {
              label[q] = next;
              component.push_back(q);
            }
          }
        }
      }
      if (static_cast<int64_t>(component.size()) <= max_area) {
        for (int64_t p : component) out[i * h * w + p] = true;
      }
    }
  }
  return torch::where(hole.to(mask.device()), torch::full({}, 0.1, mask.options()), mask);
}

Sam2ModelImpl::Sam2ModelImpl(const Sam2Options& o) : options_(o) {
  image_encoder = register_module("image_encoder", ImageEncoder(o.image_encoder));
  memory_attention = register_module("memory_attention", MemoryAttention(o.memory_attention));
  memory_encoder = register_module("memory_encoder", MemoryEncoder(o.memory_encoder));
  hidden_dim_ = o.image_encoder.neck.d_model;
  mem_dim_ = memory_dim(o);

  if (o.use_obj_ptrs_in_encoder) {
    mask_downsample = register_module(
        "mask_downsample", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 1, 4).stride(4)));
  }
  maskmem_tpos_enc =
      register_parameter("maskmem_tpos_enc", trunc_normal({o.num_maskmem, 1, 1, mem_dim_}, 0.02));
  no_mem_embed = register_parameter("no_mem_embed", trunc_normal({1, 1, hidden_dim_}, 0.02));
  no_mem_pos_enc = register_parameter("no_mem_pos_enc", trunc_normal({1, 1, hidden_dim_}, 0.02));
  if (o.pred_obj_scores && o.use_obj_ptrs_in_encoder) {
    no_obj_ptr = register_parameter("no_obj_ptr", trunc_normal({1, hidden_dim_}, 0.02));
  }
  if (o.no_obj_embed_spatial) {
    no_obj_embed_spatial =
        register_parameter("no_obj_embed_spatial", trunc_normal({1, mem_dim_}, 0.02));
  }

  // SAM heads, with SAM's hard-coded sizes.
  const int64_t embed = o.image_size / o.backbone_stride;
  PromptEncoderOptions pe;
  pe.embed_dim = hidden_dim_;
  pe.image_embedding_size = {embed, embed};
  pe.input_image_size = {o.image_size, o.image_size};
  pe.mask_in_chans = 16;
  sam_prompt_encoder = register_module("sam_prompt_encoder", PromptEncoder(pe));
  MaskDecoderOptions md;
  md.num_multimask_outputs = 3;
  md.transformer.depth = 2;
  md.transformer.embedding_dim = hidden_dim_;
  md.transformer.mlp_dim = 2048;
  md.transformer.num_heads = 8;
  md.transformer_dim = hidden_dim_;
  md.iou_head_depth = 3;
  md.iou_head_hidden_dim = 256;
  md.use_high_res_features = o.use_high_res_features_in_sam;
  md.iou_prediction_use_sigmoid = o.iou_prediction_use_sigmoid;
  md.pred_obj_scores = o.pred_obj_scores;
  md.pred_obj_scores_mlp = o.pred_obj_scores_mlp;
  md.use_multimask_token_for_obj_ptr = o.use_multimask_token_for_obj_ptr;
  md.dynamic_multimask_via_stability = o.dynamic_multimask_via_stability;
  md.dynamic_multimask_stability_delta = o.dynamic_multimask_stability_delta;
  md.dynamic_multimask_stability_thresh = o.dynamic_multimask_stability_thresh;
  sam_mask_decoder = register_module("sam_mask_decoder", MaskDecoder(md));
  if (o.use_obj_ptrs_in_encoder) {
    if (o.use_mlp_for_obj_ptr_proj) {
      obj_ptr_proj_mlp = register_module(
          "obj_ptr_proj", Mlp(MlpOptions{hidden_dim_, hidden_dim_, hidden_dim_, 3}));
    } else {
      obj_ptr_proj_linear =
          register_module("obj_ptr_proj", torch::nn::Linear(hidden_dim_, hidden_dim_));
    }
  }
  if (o.proj_tpos_enc_in_obj_ptrs) {
    obj_ptr_tpos_proj =
        register_module("obj_ptr_tpos_proj", torch::nn::Linear(hidden_dim_, mem_dim_));
  }
}

at::Tensor Sam2ModelImpl::project_obj_ptr(const at::Tensor& token) {
  if (obj_ptr_proj_mlp) return obj_ptr_proj_mlp->forward(token);
  if (obj_ptr_proj_linear) return obj_ptr_proj_linear->forward(token);
  return token;
}

BackboneOut Sam2ModelImpl::forward_image(const at::Tensor& img) {
  TORCH_CHECK(img.dim() == 4 && img.size(1) == 3 && img.size(2) == options_.image_size &&
                  img.size(3) == options_.image_size,
              "SAM2 expects images [B, 3, ", options_.image_size, ", ", options_.image_size,
              "], got ", img.sizes());
  auto enc = image_encoder->forward(img);
  return project_high_res_features(BackboneOut{enc.backbone_fpn, enc.vision_pos_enc});
}

BackboneOut Sam2ModelImpl::project_high_res_features(BackboneOut out) {
  if (options_.use_high_res_features_in_sam) {
    TORCH_CHECK(out.backbone_fpn.size() >= 2, "SAM2 high-res features need 2 levels, got ",
                out.backbone_fpn.size());
    out.backbone_fpn[0] = sam_mask_decoder->conv_s0->forward(out.backbone_fpn[0]);
    out.backbone_fpn[1] = sam_mask_decoder->conv_s1->forward(out.backbone_fpn[1]);
  }
  return out;
}

FrameFeatures Sam2ModelImpl::prepare_backbone_features(const BackboneOut& out) const {
  const size_t levels = options_.use_high_res_features_in_sam ? 3 : 1;
  TORCH_CHECK(out.backbone_fpn.size() == out.vision_pos_enc.size() &&
                  out.backbone_fpn.size() >= levels,
              "SAM2 needs ", levels, " feature levels, got ", out.backbone_fpn.size());
  FrameFeatures f;
  for (size_t i = out.backbone_fpn.size() - levels; i < out.backbone_fpn.size(); ++i) {
    const auto& x = out.backbone_fpn[i];
    const auto& p = out.vision_pos_enc[i];
    f.feat_sizes.push_back({p.size(-2), p.size(-1)});
    f.vision_feats.push_back(x.flatten(2).permute({2, 0, 1}));
    f.vision_pos_embeds.push_back(p.flatten(2).permute({2, 0, 1}));
  }
  return f;
}

SamHeadsOutput Sam2ModelImpl::forward_sam_heads(const at::Tensor& backbone_features,
                                                const std::optional<PointInputs>& point_inputs,
                                                const at::Tensor& mask_inputs,
                                                const std::vector<at::Tensor>& high_res_features,
                                                bool multimask_output) {
  const int64_t B = backbone_features.size(0);
  const auto device = backbone_features.device();
  const int64_t embed = options_.image_size / options_.backbone_stride;
  TORCH_CHECK(backbone_features.dim() == 4 && backbone_features.size(1) == hidden_dim_ &&
                  backbone_features.size(2) == embed && backbone_features.size(3) == embed,
              "SAM heads expect features [B, ", hidden_dim_, ", ", embed, ", ", embed, "], got ",
              backbone_features.sizes());

  at::Tensor coords, labels;
  if (point_inputs) {
    coords = point_inputs->point_coords;
    labels = point_inputs->point_labels;
    TORCH_CHECK(coords.size(0) == B && labels.size(0) == B, "point inputs must have batch ", B);
  } else {
    coords = torch::zeros({B, 1, 2}, torch::TensorOptions().device(device));
    labels = -torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kInt32).device(device));
  }
  std::optional<at::Tensor> sam_mask_prompt;
  if (mask_inputs.defined()) {
    TORCH_CHECK(mask_inputs.dim() == 4 && mask_inputs.size(0) == B && mask_inputs.size(1) == 1,
                "mask_input must be [", B, ", 1, H, W], got ", mask_inputs.sizes());
    const int64_t m = 4 * embed;
    sam_mask_prompt = (mask_inputs.size(2) != m || mask_inputs.size(3) != m)
                          ? resize_bilinear(mask_inputs.to(torch::kFloat32), m, m, true)
                          : mask_inputs;
  }
  auto prompt = sam_prompt_encoder->forward(coords, labels, std::nullopt, sam_mask_prompt);
  auto dec = sam_mask_decoder->forward(backbone_features, sam_prompt_encoder->get_dense_pe(),
                                       prompt.sparse, prompt.dense, multimask_output,
                                       /*repeat_image=*/false, high_res_features);
  SamHeadsOutput o;
  o.ious = dec.iou_pred;
  o.object_score_logits = dec.object_score_logits;
  auto low = dec.masks;
  at::Tensor is_obj_appearing;
  if (options_.pred_obj_scores) {
    is_obj_appearing = dec.object_score_logits > 0;  // [B, 1]
    low = torch::where(is_obj_appearing.view({B, 1, 1, 1}), low,
                       torch::full({}, kNoObjectScore, low.options()));
  }
  low = low.to(torch::kFloat32);
  o.low_res_multimasks = low;
  o.high_res_multimasks = resize_bilinear(low, options_.image_size, options_.image_size, false);

  auto token = dec.sam_tokens_out.select(1, 0);
  if (multimask_output) {
    const auto best = torch::argmax(o.ious, -1);
    const auto batch = torch::arange(B, best.options());
    o.low_res_masks = o.low_res_multimasks.index({batch, best}).unsqueeze(1);
    o.high_res_masks = o.high_res_multimasks.index({batch, best}).unsqueeze(1);
    if (dec.sam_tokens_out.size(1) > 1) token = dec.sam_tokens_out.index({batch, best});
  } else {
    o.low_res_masks = o.low_res_multimasks;
    o.high_res_masks = o.high_res_multimasks;
  }
  auto obj_ptr = project_obj_ptr(token);
  if (options_.pred_obj_scores) {
    const auto lambda = options_.soft_no_obj_ptr ? dec.object_score_logits.sigmoid()
                                                 : is_obj_appearing.to(torch::kFloat32);
    if (options_.fixed_no_obj_ptr) obj_ptr = lambda * obj_ptr;
    obj_ptr = obj_ptr + (1 - lambda) * no_obj_ptr;
  }
  o.obj_ptr = obj_ptr;
  return o;
}

SamHeadsOutput Sam2ModelImpl::use_mask_as_output(const at::Tensor& backbone_features,
                                                 const std::vector<at::Tensor>& high_res_features,
                                                 const at::Tensor& mask_inputs) {
  constexpr double kOutScale = 20.0, kOutBias = -10.0;
  const auto mask = mask_inputs.to(torch::kFloat32);
  SamHeadsOutput o;
  o.high_res_masks = mask * kOutScale + kOutBias;
  o.low_res_masks =
      resize_bilinear(o.high_res_masks, mask.size(-2) / 4, mask.size(-1) / 4, /*antialias=*/true);
  o.ious = torch::ones({mask.size(0), 1}, mask.options());
  at::Tensor obj_ptr;
  if (!options_.use_obj_ptrs_in_encoder) {
    obj_ptr = torch::zeros({mask.size(0), hidden_dim_}, mask.options());
  } else {
    obj_ptr = forward_sam_heads(backbone_features, std::nullopt, mask_downsample->forward(mask),
                                high_res_features, false)
                  .obj_ptr;
  }
  const auto lambda = (mask.flatten(1) > 0).any(1, /*keepdim=*/true).to(torch::kFloat32);  // [B, 1]
  o.object_score_logits = kOutScale * lambda + kOutBias;
  if (options_.pred_obj_scores) {
    if (options_.fixed_no_obj_ptr) obj_ptr = lambda * obj_ptr;
    obj_ptr = obj_ptr + (1 - lambda) * no_obj_ptr;
  }
  o.obj_ptr = obj_ptr;
  o.low_res_multimasks = o.low_res_masks;
  o.high_res_multimasks = o.high_res_masks;
  return o;
}

at::Tensor Sam2ModelImpl::prepare_memory_conditioned_features(
    int64_t frame_idx, bool is_init_cond_frame, const FrameFeatures& features,
    const ObjectMemory& memory, int64_t num_frames, bool track_in_reverse) {
  const auto& curr = features.vision_feats.back();      // [HW, B, C]
  const auto& curr_pos = features.vision_pos_embeds.back();
  const auto size = features.feat_sizes.back();
  const int64_t B = curr.size(1), C = hidden_dim_;
  const auto device = curr.device();
  if (options_.num_maskmem == 0) return seq_to_map(curr, size);

  std::vector<at::Tensor> to_cat_memory, to_cat_memory_pos;
  int64_t num_obj_ptr_tokens = 0;
  if (!is_init_cond_frame) {
    TORCH_CHECK(!memory.cond_frame_outputs.empty(),
                "tracking a frame needs at least one prompted (conditioning) frame");
    // Select the temporally closest conditioning frames when their number is capped.
    std::vector<const std::pair<int64_t, FrameOutput>*> selected, unselected;
    const int64_t max_cond = options_.max_cond_frames_in_attn;
    if (max_cond == -1 || static_cast<int64_t>(memory.cond_frame_outputs.size()) <= max_cond) {
      for (const auto& p : memory.cond_frame_outputs) selected.push_back(&p);
    } else {
      TORCH_CHECK(max_cond >= 2, "max_cond_frames_in_attn must allow 2+ conditioning frames");
      const std::pair<int64_t, FrameOutput>* before = nullptr;
      const std::pair<int64_t, FrameOutput>* after = nullptr;
      for (const auto& p : memory.cond_frame_outputs) {
        if (p.first < frame_idx && (!before || p.first > before->first)) before = &p;
        if (p.first >= frame_idx && (!after || p.first < after->first)) after = &p;
      }
      if (before) selected.push_back(before);
      if (after) selected.push_back(after);
      std::vector<const std::pair<int64_t, FrameOutput>*> rest;
      for (const auto& p : memory.cond_frame_outputs) {
        if (&p != before && &p != after) rest.push_back(&p);
      }
      std::stable_sort(rest.begin(), rest.end(), [&](auto* a, auto* b) {
        return std::abs(a->first - frame_idx) < std::abs(b->first - frame_idx);
      });
      const size_t remain = static_cast<size_t>(max_cond) - selected.size();
      for (size_t i = 0; i < rest.size(); ++i) (i < remain ? selected : unselected).push_back(rest[i]);
      // The official code keeps `selected` in insertion order of before, after, then closest;
      // unselected keeps the dict order.
      std::vector<const std::pair<int64_t, FrameOutput>*> ordered_unselected;
      for (const auto& p : memory.cond_frame_outputs) {
        if (std::find(unselected.begin(), unselected.end(), &p) != unselected.end()) {
          ordered_unselected.push_back(&p);
        }
      }
      unselected = ordered_unselected;
    }
    auto find_unselected = [&](int64_t t) -> const FrameOutput* {
      for (auto* p : unselected) {
        if (p->first == t) return &p->second;
      }
      return nullptr;
    };
    auto find_non_cond = [&](int64_t t) -> const FrameOutput* {
      auto it = memory.non_cond_frame_outputs.find(t);
      return it == memory.non_cond_frame_outputs.end() ? nullptr : &it->second;
    };

    std::vector<std::pair<int64_t, const FrameOutput*>> t_pos_and_prevs;
    for (auto* p : selected) t_pos_and_prevs.emplace_back(0, &p->second);
    const int64_t stride = is_training() ? 1 : options_.memory_temporal_stride_for_eval;
    auto floor_div = [](int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
    for (int64_t t_pos = 1; t_pos < options_.num_maskmem; ++t_pos) {
      const int64_t t_rel = options_.num_maskmem - t_pos;
      int64_t prev;
      if (t_rel == 1) {
        prev = track_in_reverse ? frame_idx + t_rel : frame_idx - t_rel;
      } else if (!track_in_reverse) {
        prev = floor_div(frame_idx - 2, stride) * stride - (t_rel - 2) * stride;
      } else {
        prev = -floor_div(-(frame_idx + 2), stride) * stride + (t_rel - 2) * stride;
      }
      const FrameOutput* out = find_non_cond(prev);
      if (!out) out = find_unselected(prev);
      t_pos_and_prevs.emplace_back(t_pos, out);
    }
    for (const auto& [t_pos, prev] : t_pos_and_prevs) {
      if (!prev || !prev->maskmem_features.defined()) continue;
      // Stored memories may be bf16 and on the CPU; attention runs in float32 on the model.
      const auto feats = prev->maskmem_features.to(device).to(torch::kFloat32);
      to_cat_memory.push_back(feats.flatten(2).permute({2, 0, 1}));
      auto enc = prev->maskmem_pos_enc.to(device).flatten(2).permute({2, 0, 1});
      enc = enc + maskmem_tpos_enc[options_.num_maskmem - t_pos - 1];
      to_cat_memory_pos.push_back(enc);
    }

    if (options_.use_obj_ptrs_in_encoder) {
      const int64_t max_ptrs = std::min(num_frames, options_.max_obj_ptrs_in_encoder);
      const int64_t sign = track_in_reverse ? -1 : 1;
      std::vector<int64_t> pos_list;
      std::vector<at::Tensor> ptrs;
      for (auto* p : selected) {
        const int64_t t = p->first;
        if (!is_training() && options_.only_obj_ptrs_in_the_past_for_eval &&
            !(track_in_reverse ? t >= frame_idx : t <= frame_idx)) {
          continue;
        }
        pos_list.push_back(options_.use_signed_tpos_enc_to_obj_ptrs ? (frame_idx - t) * sign
                                                                    : std::abs(frame_idx - t));
        ptrs.push_back(p->second.obj_ptr);
      }
      for (int64_t t_diff = 1; t_diff < max_ptrs; ++t_diff) {
        const int64_t t = track_in_reverse ? frame_idx + t_diff : frame_idx - t_diff;
        if (t < 0 || t >= num_frames) break;
        const FrameOutput* out = find_non_cond(t);
        if (!out) out = find_unselected(t);
        if (out) {
          pos_list.push_back(t_diff);
          ptrs.push_back(out->obj_ptr);
        }
      }
      if (!ptrs.empty()) {
        auto obj_ptrs = torch::stack(ptrs, 0).to(device);  // [P, B, C]
        at::Tensor obj_pos;
        if (options_.add_tpos_enc_to_obj_ptrs) {
          const double t_diff_max = static_cast<double>(max_ptrs - 1);
          const int64_t tpos_dim = options_.proj_tpos_enc_in_obj_ptrs ? C : mem_dim_;
          auto pos = torch::tensor(pos_list, torch::TensorOptions().dtype(torch::kInt64))
                         .to(device);
          obj_pos = get_1d_sine_pe(pos / t_diff_max, tpos_dim);
          if (obj_ptr_tpos_proj) obj_pos = obj_ptr_tpos_proj->forward(obj_pos);
          obj_pos = obj_pos.unsqueeze(1).expand({-1, B, mem_dim_});
        } else {
          obj_pos = torch::zeros({static_cast<int64_t>(pos_list.size()), B, mem_dim_},
                                 obj_ptrs.options());
        }
        if (mem_dim_ < C) {
          obj_ptrs = obj_ptrs.reshape({-1, B, C / mem_dim_, mem_dim_})
                         .permute({0, 2, 1, 3})
                         .flatten(0, 1);
          obj_pos = obj_pos.repeat_interleave(C / mem_dim_, 0);
        }
        to_cat_memory.push_back(obj_ptrs);
        to_cat_memory_pos.push_back(obj_pos);
        num_obj_ptr_tokens = obj_ptrs.size(0);
      }
    }
  } else {
    if (options_.directly_add_no_mem_embed) {
      return seq_to_map(curr + no_mem_embed, size);
    }
    to_cat_memory.push_back(no_mem_embed.expand({1, B, mem_dim_}));
    to_cat_memory_pos.push_back(no_mem_pos_enc.expand({1, B, mem_dim_}));
  }
  TORCH_CHECK(!to_cat_memory.empty(), "no memory to attend to on frame ", frame_idx);
  const auto mem = torch::cat(to_cat_memory, 0);
  const auto mem_pos = torch::cat(to_cat_memory_pos, 0);
  const auto out = memory_attention->forward(curr, mem, curr_pos, mem_pos, num_obj_ptr_tokens);
  return seq_to_map(out, size);
}

std::pair<at::Tensor, at::Tensor> Sam2ModelImpl::encode_new_memory(
    const FrameFeatures& features, const at::Tensor& pred_masks_high_res,
    const at::Tensor& object_score_logits, bool is_mask_from_pts) {
  const auto pix_feat = seq_to_map(features.vision_feats.back(), features.feat_sizes.back());
  auto masks = pred_masks_high_res;
  if (options_.non_overlap_masks_for_mem_enc && !is_training()) {
    masks = apply_non_overlapping_constraints(masks);
  }
  const bool binarize = options_.binarize_mask_from_pts_for_mem_enc && is_mask_from_pts;
  at::Tensor mask_for_mem = binarize && !is_training() ? (masks > 0).to(torch::kFloat32)
                                                       : torch::sigmoid(masks);
  if (options_.sigmoid_scale_for_mem_enc != 1.0) {
    mask_for_mem = mask_for_mem * options_.sigmoid_scale_for_mem_enc;
  }
  if (options_.sigmoid_bias_for_mem_enc != 0.0) {
    mask_for_mem = mask_for_mem + options_.sigmoid_bias_for_mem_enc;
  }
  auto out = memory_encoder->forward(pix_feat, mask_for_mem, /*skip_mask_sigmoid=*/true);
  auto feats = out.vision_features;
  if (no_obj_embed_spatial.defined()) {
    const auto appearing = (object_score_logits > 0).to(torch::kFloat32);  // [B, 1]
    feats = feats + (1 - appearing.view({-1, 1, 1, 1})) *
                        no_obj_embed_spatial.view({1, -1, 1, 1}).expand(feats.sizes());
  }
  return {feats, out.vision_pos_enc};
}

bool Sam2ModelImpl::use_multimask(bool is_init_cond_frame,
                                  const std::optional<PointInputs>& points) const {
  const int64_t num_pts = points ? points->point_labels.size(1) : 0;
  return options_.multimask_output_in_sam &&
         (is_init_cond_frame || options_.multimask_output_for_tracking) &&
         options_.multimask_min_pt_num <= num_pts && num_pts <= options_.multimask_max_pt_num;
}

FrameOutput Sam2ModelImpl::track_step(int64_t frame_idx, bool is_init_cond_frame,
                                      const FrameFeatures& features,
                                      const std::optional<PointInputs>& point_inputs,
                                      const at::Tensor& mask_inputs, const ObjectMemory& memory,
                                      int64_t num_frames, bool track_in_reverse,
                                      bool run_mem_encoder,
                                      const at::Tensor& prev_sam_mask_logits) {
  std::vector<at::Tensor> high_res;
  for (size_t i = 0; i + 1 < features.vision_feats.size(); ++i) {
    high_res.push_back(seq_to_map(features.vision_feats[i], features.feat_sizes[i]));
  }
  SamHeadsOutput sam;
  if (mask_inputs.defined() && options_.use_mask_input_as_output_without_sam) {
    const auto pix_feat = seq_to_map(features.vision_feats.back(), features.feat_sizes.back());
    sam = use_mask_as_output(pix_feat, high_res, mask_inputs);
  } else {
    FrameFeatures top;
    top.vision_feats = {features.vision_feats.back()};
    top.vision_pos_embeds = {features.vision_pos_embeds.back()};
    top.feat_sizes = {features.feat_sizes.back()};
    const auto pix_feat = prepare_memory_conditioned_features(
        frame_idx, is_init_cond_frame, top, memory, num_frames, track_in_reverse);
    at::Tensor masks = mask_inputs;
    if (prev_sam_mask_logits.defined()) {
      TORCH_CHECK(point_inputs && !mask_inputs.defined(),
                  "previous mask logits go with point inputs only");
      masks = prev_sam_mask_logits;
    }
    sam = forward_sam_heads(pix_feat, point_inputs, masks, high_res,
                            use_multimask(is_init_cond_frame, point_inputs));
  }
  FrameOutput out;
  out.pred_masks = sam.low_res_masks;
  out.pred_masks_high_res = sam.high_res_masks;
  out.obj_ptr = sam.obj_ptr;
  out.object_score_logits = sam.object_score_logits;
  out.pred_multimasks_high_res = sam.high_res_multimasks;
  out.ious = sam.ious;
  if (run_mem_encoder && options_.num_maskmem > 0) {
    std::tie(out.maskmem_features, out.maskmem_pos_enc) = encode_new_memory(
        features, sam.high_res_masks, sam.object_score_logits, point_inputs.has_value());
  }
  return out;
}

at::Tensor Sam2ModelImpl::apply_non_overlapping_constraints(const at::Tensor& pred_masks) const {
  const int64_t n = pred_masks.size(0);
  if (n == 1) return pred_masks;
  const auto max_idx = torch::argmax(pred_masks, 0, /*keepdim=*/true);
  const auto idx = torch::arange(n, max_idx.options()).view({n, 1, 1, 1});
  return torch::where(max_idx == idx, pred_masks, torch::clamp_max(pred_masks, -10.0));
}

}  // namespace iris::models::sam2
