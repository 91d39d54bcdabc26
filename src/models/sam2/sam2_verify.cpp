#include "models/sam2/sam2_verify.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "core/error.h"
#include "io/checkpoint.h"
#include "models/sam2/sam2_loader.h"
#include "models/sam2/video_predictor.h"

namespace iris::models::sam2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(file_message(path.string(), "cannot read the file"));
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(file_message(path.string(), std::string("not valid JSON: ") + e.what()));
  }
}

const json& field(const json& j, const std::string& key, const fs::path& file,
                  const std::string& where) {
  if (!j.is_object() || !j.contains(key)) {
    throw InputError(file_message(file.string(), where + ": missing field '" + key + "'"));
  }
  return j.at(key);
}

TensorComparison compare(const std::string& name, const at::Tensor& ours, const at::Tensor& theirs,
                         double tolerance) {
  TensorComparison c;
  c.name = name;
  c.shape = theirs.sizes().vec();
  if (ours.sizes() != theirs.sizes()) {
    c.relative_error = std::numeric_limits<double>::infinity();
    c.max_abs_error = std::numeric_limits<double>::infinity();
    return c;
  }
  const auto a = ours.to(torch::kCPU, torch::kFloat64);
  const auto b = theirs.to(torch::kCPU, torch::kFloat64);
  const double denom = b.norm().item<double>();
  const double diff = (a - b).norm().item<double>();
  c.relative_error = denom > 0 ? diff / denom : diff;
  c.max_abs_error = (a - b).abs().max().item<double>();
  c.passed = c.relative_error <= tolerance;
  return c;
}

}  // namespace

bool VerifyReport::passed() const {
  if (tensors.empty()) return false;
  for (const auto& t : tensors) {
    if (!t.passed) return false;
  }
  return true;
}

VerifyReport verify_sam2_fixture(const fs::path& dir, double tolerance) {
  const fs::path fixture_json = dir / "fixture.json";
  const json fx = read_json(fixture_json);
  const fs::path config = dir / field(fx, "config", fixture_json, "top level").get<std::string>();
  const fs::path checkpoint = dir / fx.value("checkpoint", std::string("checkpoint.pt"));
  const fs::path expected_path = dir / fx.value("expected", std::string("expected.pt"));

  auto model = load_sam2(config, checkpoint);
  const auto expected_file = io::read_checkpoint(expected_path);
  const auto expected = io::select_state_dict(expected_file.root, "", expected_path.string());
  auto need = [&](const std::string& name) -> const at::Tensor& {
    const at::Tensor* t = expected.find(name);
    if (!t) throw InputError(file_message(expected_path.string(), "missing tensor '" + name + "'"));
    return *t;
  };

  VerifyReport report;
  report.tolerance = tolerance;
  std::set<std::string> checked;
  torch::NoGradGuard guard;  // not InferenceMode: cached constants must stay usable in training

  const auto frames = need("frames_normalized").to(torch::kFloat32);
  int64_t video_h = frames.size(2), video_w = frames.size(3);
  if (const auto* raw = expected.find("frames_01")) {
    video_h = raw->size(-2);
    video_w = raw->size(-1);
  }

  // Image features of frame 0.
  {
    const auto out = model->forward_image(frames.slice(0, 0, 1));
    const std::regex re(R"(image/(backbone_fpn|vision_pos_enc)_(\d+))");
    for (const auto& [name, tensor] : expected) {
      std::smatch m;
      if (!std::regex_match(name, m, re)) continue;
      const auto& list = m[1] == "backbone_fpn" ? out.backbone_fpn : out.vision_pos_enc;
      const size_t level = std::stoul(m[2]);
      if (level >= list.size()) continue;
      report.tensors.push_back(compare(name, list[level], tensor, tolerance));
      checked.insert(name);
    }
  }

  // Prompts, in order, then propagation.
  Sam2VideoPredictor predictor(model);
  predictor.init_state(frames, video_h, video_w);
  const json& prompts = field(fx, "prompts", fixture_json, "top level");
  if (!prompts.is_array()) throw InputError(file_message(fixture_json.string(), "prompts: expected a list"));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const json& p = prompts[i];
    const std::string where = "prompts[" + std::to_string(i) + "]";
    const int64_t obj = field(p, "obj_id", fixture_json, where).get<int64_t>();
    const int64_t frame = field(p, "frame", fixture_json, where).get<int64_t>();
    const std::string type = field(p, "type", fixture_json, where).get<std::string>();
    at::Tensor masks;
    if (type == "points") {
      const auto& labels_json = field(p, "labels", fixture_json, where);
      std::vector<float> xy;
      bool pixels = p.contains("points_xy_pixels");
      for (const auto& pt : pixels ? p.at("points_xy_pixels") : field(p, "points_xy", fixture_json, where)) {
        xy.push_back(pt.at(0).get<float>());
        xy.push_back(pt.at(1).get<float>());
      }
      std::vector<int32_t> labels = labels_json.get<std::vector<int32_t>>();
      const auto n = static_cast<int64_t>(labels.size());
      masks = predictor.add_new_points_or_box(
          frame, obj, torch::tensor(xy).reshape({n, 2}), torch::tensor(labels), std::nullopt,
          /*clear_old_points=*/true, /*normalize_coords=*/pixels);
    } else if (type == "box") {
      const bool pixels = p.contains("box_xyxy_pixels");
      auto box = (pixels ? p.at("box_xyxy_pixels") : field(p, "box_xyxy", fixture_json, where))
                     .get<std::vector<float>>();
      masks = predictor.add_new_points_or_box(frame, obj, std::nullopt, std::nullopt,
                                              torch::tensor(box), true, pixels);
    } else if (type == "mask") {
      const int64_t gt = field(p, "mask_from_gt_frame", fixture_json, where).get<int64_t>();
      masks = predictor.add_new_mask(frame, obj, need("gt_masks")[gt] > 0.5);
    } else {
      throw InputError(file_message(fixture_json.string(),
                                    where + ".type: expected points, box or mask, got '" + type + "'"));
    }
    const std::string name =
        "video/prompt_" + std::to_string(obj) + "_frame" + std::to_string(frame) + "_output";
    if (const auto* theirs = expected.find(name)) {
      const auto& ids = predictor.obj_ids();
      const auto idx = std::find(ids.begin(), ids.end(), obj) - ids.begin();
      report.tensors.push_back(compare(name, masks[idx], *theirs, tolerance));
      checked.insert(name);
    }
  }

  if (const auto* theirs = expected.find("video/propagated_logits")) {
    std::vector<int64_t> order = predictor.obj_ids();
    if (fx.contains("object_ids_in_output_order")) {
      order = fx.at("object_ids_in_output_order").get<std::vector<int64_t>>();
    }
    auto ours = torch::full(theirs->sizes(), kNoObjectScore, theirs->options());
    predictor.propagate_in_video([&](int64_t t, const at::Tensor& masks) {
      const auto& ids = predictor.obj_ids();
      for (size_t k = 0; k < order.size(); ++k) {
        const auto idx = std::find(ids.begin(), ids.end(), order[k]) - ids.begin();
        if (idx < static_cast<int64_t>(ids.size()) && t < ours.size(0)) {
          ours[t][k].copy_(masks[idx].cpu());
        }
      }
    });
    report.tensors.push_back(compare("video/propagated_logits", ours, *theirs, tolerance));
    checked.insert("video/propagated_logits");
  }

  const std::set<std::string> inputs = {"frames_01", "frames_normalized", "gt_masks"};
  for (const auto& [name, tensor] : expected) {
    if (!checked.count(name) && !inputs.count(name)) report.unchecked.push_back(name);
  }
  return report;
}

}  // namespace iris::models::sam2
