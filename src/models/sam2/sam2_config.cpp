#include "models/sam2/sam2_config.h"

#include <yaml-cpp/yaml.h>

#include <map>
#include <set>
#include <vector>

#include "core/config.h"
#include "core/error.h"

namespace iris::models::sam2 {
namespace {

// A mapping of the config being read: fields are taken one by one and whatever is left at the
// end is an unknown field (named with its dotted path and the closest known one).
class Section {
 public:
  Section(YAML::Node node, std::string path, const std::string& source)
      : node_(std::move(node)), path_(std::move(path)), source_(source) {
    if (node_ && !node_.IsNull() && !node_.IsMap()) fail(path_, "expected a mapping");
    take("_target_");  // Hydra's class path: we know which class each section is
  }

  bool has(const std::string& key) const { return node_ && node_[key] && !node_[key].IsNull(); }

  template <typename T>
  void get(const std::string& key, T& out) {
    take(key);
    if (!has(key)) return;
    try {
      out = node_[key].as<T>();
    } catch (const YAML::Exception&) {
      fail(dotted(key), std::string("expected ") + type_name<T>() + ", got '" +
                            YAML::Dump(node_[key]) + "'");
    }
  }

  template <std::size_t N>
  void get(const std::string& key, std::array<int64_t, N>& out) {
    std::vector<int64_t> v(out.begin(), out.end());
    get(key, v);
    if (v.size() != N) {
      fail(dotted(key), "expected " + std::to_string(N) + " integers, got " + std::to_string(v.size()));
    }
    std::copy(v.begin(), v.end(), out.begin());
  }

  // A field that must be null or absent (e.g. weights_path: loading happens elsewhere).
  void null_only(const std::string& key, const std::string& why) {
    take(key);
    if (has(key)) fail(dotted(key), why);
  }

  Section child(const std::string& key) {
    take(key);
    return Section(node_ ? node_[key] : YAML::Node(), dotted(key), source_);
  }

  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& kv : node_) {
      const auto key = kv.first.as<std::string>();
      if (taken_.count(key)) continue;
      std::string msg = "unknown field";
      const std::vector<std::string> known(taken_.begin(), taken_.end());
      if (auto m = closest_match(key, known)) msg += " (did you mean '" + *m + "'?)";
      fail(dotted(key), msg);
    }
  }

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw ConfigError(file_message(source_, where + ": " + what));
  }
  std::string dotted(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  void take(const std::string& key) { taken_.insert(key); }
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    return "a list";
  }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> taken_;
};

void read_sine(Section s, PositionEmbeddingSineOptions& o) {
  s.get("num_pos_feats", o.num_pos_feats);
  s.get("temperature", o.temperature);
  s.get("normalize", o.normalize);
  if (s.has("scale")) {
    if (!o.normalize) s.fail(s.dotted("scale"), "normalize must be true when scale is given");
    s.get("scale", o.scale);
  } else {
    s.get("scale", o.scale);  // null: 2π
  }
  // Compile-cache warm-up settings of the official module; no effect on the values.
  bool warmup = true;
  int64_t image_size = 0;
  std::vector<int64_t> strides;
  s.get("warmup_cache", warmup);
  s.get("image_size", image_size);
  s.get("strides", strides);
  s.finish();
}

void read_rope(Section s, RoPEAttentionOptions& o) {
  s.get("embedding_dim", o.attention.embedding_dim);
  s.get("num_heads", o.attention.num_heads);
  s.get("downsample_rate", o.attention.downsample_rate);
  s.get("dropout", o.attention.dropout);
  s.get("kv_in_dim", o.attention.kv_in_dim);
  s.get("rope_theta", o.rope_theta);
  s.get("rope_k_repeat", o.rope_k_repeat);
  s.get("feat_sizes", o.feat_sizes);
  s.finish();
}

void read_image_encoder(Section s, ImageEncoderOptions& o) {
  s.get("scalp", o.scalp);
  {
    auto t = s.child("trunk");
    auto& h = o.trunk;
    t.get("embed_dim", h.embed_dim);
    t.get("num_heads", h.num_heads);
    t.get("drop_path_rate", h.drop_path_rate);
    t.get("q_pool", h.q_pool);
    t.get("q_stride", h.q_stride);
    t.get("stages", h.stages);
    t.get("dim_mul", h.dim_mul);
    t.get("head_mul", h.head_mul);
    t.get("window_pos_embed_bkg_spatial_size", h.window_pos_embed_bkg_spatial_size);
    t.get("window_spec", h.window_spec);
    t.get("global_att_blocks", h.global_att_blocks);
    t.get("return_interm_layers", h.return_interm_layers);
    t.null_only("weights_path", "pretrained trunk weights are not read from the config; pass "
                                "the checkpoint instead");
    t.finish();
  }
  {
    auto n = s.child("neck");
    auto& f = o.neck;
    read_sine(n.child("position_encoding"), f.position_encoding);
    n.get("d_model", f.d_model);
    n.get("backbone_channel_list", f.backbone_channel_list);
    n.get("kernel_size", f.kernel_size);
    n.get("stride", f.stride);
    n.get("padding", f.padding);
    n.get("fpn_interp_model", f.fpn_interp_model);
    n.get("fuse_type", f.fuse_type);
    n.get("fpn_top_down_levels", f.fpn_top_down_levels);
    if (f.fuse_type != "sum" && f.fuse_type != "avg") {
      n.fail(n.dotted("fuse_type"), "expected 'sum' or 'avg', got '" + f.fuse_type + "'");
    }
    n.finish();
  }
  s.finish();
}

void read_memory_attention(Section s, MemoryAttentionOptions& o) {
  s.get("d_model", o.d_model);
  s.get("pos_enc_at_input", o.pos_enc_at_input);
  s.get("num_layers", o.num_layers);
  s.get("batch_first", o.batch_first);
  auto l = s.child("layer");
  auto& lo = o.layer;
  l.get("activation", lo.activation);
  if (lo.activation != "relu" && lo.activation != "gelu" && lo.activation != "glu") {
    l.fail(l.dotted("activation"), "expected relu, gelu or glu, got '" + lo.activation + "'");
  }
  l.get("d_model", lo.d_model);
  l.get("dim_feedforward", lo.dim_feedforward);
  l.get("dropout", lo.dropout);
  l.get("pos_enc_at_attn", lo.pos_enc_at_attn);
  l.get("pos_enc_at_cross_attn_keys", lo.pos_enc_at_cross_attn_keys);
  l.get("pos_enc_at_cross_attn_queries", lo.pos_enc_at_cross_attn_queries);
  read_rope(l.child("self_attention"), lo.self_attention);
  read_rope(l.child("cross_attention"), lo.cross_attention);
  l.finish();
  s.finish();
}

void read_memory_encoder(Section s, MemoryEncoderOptions& o) {
  s.get("out_dim", o.out_dim);
  s.get("in_dim", o.in_dim);
  read_sine(s.child("position_encoding"), o.position_encoding);
  {
    auto m = s.child("mask_downsampler");
    m.get("embed_dim", o.mask_downsampler.embed_dim);
    m.get("kernel_size", o.mask_downsampler.kernel_size);
    m.get("stride", o.mask_downsampler.stride);
    m.get("padding", o.mask_downsampler.padding);
    m.get("total_stride", o.mask_downsampler.total_stride);
    m.finish();
  }
  {
    auto f = s.child("fuser");
    f.get("num_layers", o.fuser.num_layers);
    f.get("dim", o.fuser.dim);
    f.get("input_projection", o.fuser.input_projection);
    auto c = f.child("layer");
    auto& x = o.fuser.layer;
    c.get("dim", x.dim);
    c.get("kernel_size", x.kernel_size);
    c.get("padding", x.padding);
    c.get("drop_path", x.drop_path);
    c.get("layer_scale_init_value", x.layer_scale_init_value);
    c.get("use_dwconv", x.use_dwconv);
    c.finish();
    f.finish();
  }
  s.finish();
}

}  // namespace

Sam2Options parse_sam2_config(const YAML::Node& root, const std::string& source) {
  // Official files hold the model under `model:` (with `# @package _global_`); accept the bare
  // mapping too.
  YAML::Node model = root;
  std::string path;
  if (root && root.IsMap() && root["model"]) {
    model = root["model"];
    path = "model";
  }
  if (!model || !model.IsMap()) {
    throw ConfigError(file_message(source, "expected a 'model:' mapping (an official SAM2 config)"));
  }
  Sam2Options o;
  Section s(model, path, source);
  read_image_encoder(s.child("image_encoder"), o.image_encoder);
  read_memory_attention(s.child("memory_attention"), o.memory_attention);
  read_memory_encoder(s.child("memory_encoder"), o.memory_encoder);
  s.get("num_maskmem", o.num_maskmem);
  s.get("image_size", o.image_size);
  s.get("backbone_stride", o.backbone_stride);
  s.get("sigmoid_scale_for_mem_enc", o.sigmoid_scale_for_mem_enc);
  s.get("sigmoid_bias_for_mem_enc", o.sigmoid_bias_for_mem_enc);
  s.get("binarize_mask_from_pts_for_mem_enc", o.binarize_mask_from_pts_for_mem_enc);
  s.get("use_mask_input_as_output_without_sam", o.use_mask_input_as_output_without_sam);
  s.get("max_cond_frames_in_attn", o.max_cond_frames_in_attn);
  s.get("directly_add_no_mem_embed", o.directly_add_no_mem_embed);
  s.get("use_high_res_features_in_sam", o.use_high_res_features_in_sam);
  s.get("multimask_output_in_sam", o.multimask_output_in_sam);
  s.get("multimask_min_pt_num", o.multimask_min_pt_num);
  s.get("multimask_max_pt_num", o.multimask_max_pt_num);
  s.get("multimask_output_for_tracking", o.multimask_output_for_tracking);
  s.get("use_multimask_token_for_obj_ptr", o.use_multimask_token_for_obj_ptr);
  s.get("iou_prediction_use_sigmoid", o.iou_prediction_use_sigmoid);
  s.get("memory_temporal_stride_for_eval", o.memory_temporal_stride_for_eval);
  s.get("non_overlap_masks_for_mem_enc", o.non_overlap_masks_for_mem_enc);
  s.get("use_obj_ptrs_in_encoder", o.use_obj_ptrs_in_encoder);
  s.get("max_obj_ptrs_in_encoder", o.max_obj_ptrs_in_encoder);
  s.get("add_tpos_enc_to_obj_ptrs", o.add_tpos_enc_to_obj_ptrs);
  s.get("proj_tpos_enc_in_obj_ptrs", o.proj_tpos_enc_in_obj_ptrs);
  s.get("use_signed_tpos_enc_to_obj_ptrs", o.use_signed_tpos_enc_to_obj_ptrs);
  s.get("only_obj_ptrs_in_the_past_for_eval", o.only_obj_ptrs_in_the_past_for_eval);
  s.get("pred_obj_scores", o.pred_obj_scores);
  s.get("pred_obj_scores_mlp", o.pred_obj_scores_mlp);
  s.get("fixed_no_obj_ptr", o.fixed_no_obj_ptr);
  s.get("soft_no_obj_ptr", o.soft_no_obj_ptr);
  s.get("use_mlp_for_obj_ptr_proj", o.use_mlp_for_obj_ptr_proj);
  s.get("no_obj_embed_spatial", o.no_obj_embed_spatial);
  s.get("compile_image_encoder", o.compile_image_encoder);
  {
    auto x = s.child("sam_mask_decoder_extra_args");
    x.get("dynamic_multimask_via_stability", o.dynamic_multimask_via_stability);
    x.get("dynamic_multimask_stability_delta", o.dynamic_multimask_stability_delta);
    x.get("dynamic_multimask_stability_thresh", o.dynamic_multimask_stability_thresh);
    x.finish();
  }
  s.get("fill_hole_area", o.fill_hole_area);
  s.get("non_overlap_masks", o.non_overlap_masks);
  s.get("clear_non_cond_mem_around_input", o.clear_non_cond_mem_around_input);
  s.get("add_all_frames_to_correct_as_cond", o.add_all_frames_to_correct_as_cond);
  s.finish();

  // The official constructor's own consistency checks.
  if (o.proj_tpos_enc_in_obj_ptrs && !o.add_tpos_enc_to_obj_ptrs) {
    s.fail(s.dotted("proj_tpos_enc_in_obj_ptrs"), "needs add_tpos_enc_to_obj_ptrs: true");
  }
  if (o.fixed_no_obj_ptr && !(o.pred_obj_scores && o.use_obj_ptrs_in_encoder)) {
    s.fail(s.dotted("fixed_no_obj_ptr"), "needs pred_obj_scores and use_obj_ptrs_in_encoder");
  }
  if (o.image_size % 32 != 0) {
    s.fail(s.dotted("image_size"), "must be a multiple of 32, got " + std::to_string(o.image_size));
  }
  return o;
}

Sam2Options load_sam2_config(const std::filesystem::path& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    throw InputError(file_message(path.string(), "cannot read the file"));
  } catch (const YAML::Exception& e) {
    throw ConfigError(file_message(path.string(), std::string("not valid YAML: ") + e.msg));
  }
  return parse_sam2_config(root, path.string());
}

void apply_official_postprocessing(Sam2Options& o, bool video) {
  o.dynamic_multimask_via_stability = true;
  o.dynamic_multimask_stability_delta = 0.05;
  o.dynamic_multimask_stability_thresh = 0.98;
  if (video) {
    o.binarize_mask_from_pts_for_mem_enc = true;
    o.fill_hole_area = 8;
  }
}

Sam2Options official_sam2_options(const std::string& size_in, const std::string& version) {
  static const std::map<std::string, std::string> kAliases = {
      {"t", "tiny"}, {"s", "small"}, {"b+", "base_plus"}, {"l", "large"},
      {"tiny", "tiny"}, {"small", "small"}, {"base_plus", "base_plus"}, {"large", "large"}};
  const auto it = kAliases.find(size_in);
  if (it == kAliases.end()) {
    throw ConfigError("unknown SAM2 size '" + size_in +
                      "': expected tiny, small, base_plus or large (t, s, b+, l)");
  }
  if (version != "2.1" && version != "2") {
    throw ConfigError("unknown SAM2 version '" + version + "': expected 2 or 2.1");
  }
  Sam2Options o;
  o.image_encoder = official_image_encoder_options(it->second);
  o.image_encoder.scalp = 1;
  auto& ma = o.memory_attention;
  ma.d_model = 256;
  ma.pos_enc_at_input = true;
  ma.num_layers = 4;
  auto& layer = ma.layer;
  layer.activation = "relu";
  layer.dim_feedforward = 2048;
  layer.dropout = 0.1;
  layer.pos_enc_at_attn = false;
  layer.pos_enc_at_cross_attn_keys = true;
  layer.pos_enc_at_cross_attn_queries = false;
  for (auto* rope : {&layer.self_attention, &layer.cross_attention}) {
    rope->rope_theta = 10000.0;
    rope->feat_sizes = {64, 64};
    rope->attention = AttentionOptions{256, 1, 1, 0.1, 0};
  }
  layer.cross_attention.rope_k_repeat = true;
  layer.cross_attention.attention.kv_in_dim = 64;
  auto& me = o.memory_encoder;
  me.out_dim = 64;
  me.in_dim = 256;
  me.position_encoding = PositionEmbeddingSineOptions{64};
  me.mask_downsampler = MaskDownSamplerOptions{256, 3, 2, 1, 16};
  me.fuser.num_layers = 2;
  me.fuser.layer = CXBlockOptions{256, 7, 3, 0.0, 1e-6, true};
  o.num_maskmem = 7;
  o.image_size = 1024;
  o.sigmoid_scale_for_mem_enc = 20.0;
  o.sigmoid_bias_for_mem_enc = -10.0;
  o.use_mask_input_as_output_without_sam = true;
  o.directly_add_no_mem_embed = true;
  o.use_high_res_features_in_sam = true;
  o.multimask_output_in_sam = true;
  o.iou_prediction_use_sigmoid = true;
  o.use_obj_ptrs_in_encoder = true;
  o.only_obj_ptrs_in_the_past_for_eval = true;
  o.pred_obj_scores = true;
  o.pred_obj_scores_mlp = true;
  o.fixed_no_obj_ptr = true;
  o.multimask_output_for_tracking = true;
  o.use_multimask_token_for_obj_ptr = true;
  o.multimask_min_pt_num = 0;
  o.multimask_max_pt_num = 1;
  o.use_mlp_for_obj_ptr_proj = true;
  const bool v21 = version == "2.1";
  o.no_obj_embed_spatial = v21;
  o.add_tpos_enc_to_obj_ptrs = v21;
  o.proj_tpos_enc_in_obj_ptrs = v21;
  o.use_signed_tpos_enc_to_obj_ptrs = v21;
  return o;
}

int64_t memory_dim(const Sam2Options& o) {
  return o.memory_encoder.out_dim != o.memory_encoder.in_dim ? o.memory_encoder.out_dim
                                                             : o.image_encoder.neck.d_model;
}

}  // namespace iris::models::sam2
