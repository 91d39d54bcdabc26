#include "models/sam2/sam2_predict.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/stats.h"
#include "core/progress.h"
#include "io/image_io.h"
#include "models/sam2/video_predictor.h"
#if IRIS_HAVE_NIFTI
#include "io/nifti.h"
#endif

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<float> parse_numbers(const std::string& text, const std::string& what) {
  std::vector<float> values;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      values.push_back(std::stof(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError(fmt::format("{} '{}': '{}' is not a number", what, text, item));
    }
  }
  return values;
}

// Distinct colours for object ids (RGB).
std::array<uint8_t, 3> colour_of(int64_t id) {
  static const std::array<std::array<uint8_t, 3>, 10> kPalette = {{{230, 25, 75},
                                                                  {60, 180, 75},
                                                                  {255, 225, 25},
                                                                  {0, 130, 200},
                                                                  {245, 130, 48},
                                                                  {145, 30, 180},
                                                                  {70, 240, 240},
                                                                  {240, 50, 230},
                                                                  {210, 245, 60},
                                                                  {250, 190, 212}}};
  return kPalette[static_cast<size_t>(id) % kPalette.size()];
}

// frame [H, W, 3] uint8, labels [H, W] -> blended [H, W, 3] uint8
at::Tensor overlay_frame(const at::Tensor& frame, const at::Tensor& labels,
                         const std::vector<int64_t>& ids) {
  auto out = frame.to(torch::kFloat32);
  for (const auto id : ids) {
    const auto c = colour_of(id);
    const auto colour = torch::tensor({float(c[0]), float(c[1]), float(c[2])});
    const auto m = (labels == id).unsqueeze(-1);
    out = torch::where(m, 0.5 * out + 0.5 * colour, out);
  }
  return out.round().clamp(0, 255).to(torch::kUInt8);
}

const json& need(const json& j, const char* key, const fs::path& file, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) {
    throw InputError(file_message(file.string(), where + ": missing field '" + key + "'"));
  }
  return j.at(key);
}

}  // namespace

Sam2Prompt parse_point_prompt(const std::string& text, int64_t frame, int64_t obj_id) {
  const auto v = parse_numbers(text, "--point");
  if (v.size() != 2 && v.size() != 3) {
    throw UsageError(fmt::format("--point '{}': expected x,y or x,y,label", text));
  }
  Sam2Prompt p;
  p.type = Sam2Prompt::Type::kPoints;
  p.frame = frame;
  p.obj_id = obj_id;
  p.points = {v[0], v[1]};
  const float label = v.size() == 3 ? v[2] : 1.0f;
  if (label != 0.0f && label != 1.0f) {
    throw UsageError(fmt::format("--point '{}': label must be 1 (positive) or 0 (negative)", text));
  }
  p.labels = {static_cast<int32_t>(label)};
  return p;
}

Sam2Prompt parse_box_prompt(const std::string& text, int64_t frame, int64_t obj_id) {
  const auto v = parse_numbers(text, "--box");
  if (v.size() != 4) throw UsageError(fmt::format("--box '{}': expected x0,y0,x1,y1", text));
  if (v[2] <= v[0] || v[3] <= v[1]) {
    throw UsageError(fmt::format("--box '{}': expected x0 < x1 and y0 < y1", text));
  }
  Sam2Prompt p;
  p.type = Sam2Prompt::Type::kBox;
  p.frame = frame;
  p.obj_id = obj_id;
  p.box = v;
  return p;
}

std::vector<Sam2Prompt> read_prompts_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(file_message(path.string(), "cannot read the file"));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(file_message(path.string(), std::string("not valid JSON: ") + e.what()));
  }
  if (!j.is_array()) throw InputError(file_message(path.string(), "expected a list of prompts"));
  std::vector<Sam2Prompt> prompts;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& e = j[i];
    const std::string where = fmt::format("prompt {}", i);
    try {
      Sam2Prompt p;
      p.frame = e.value("frame", int64_t{0});
      p.obj_id = e.value("obj_id", int64_t{1});
      const std::string type = need(e, "type", path, where).get<std::string>();
      if (type == "points" || type == "point") {
        p.type = Sam2Prompt::Type::kPoints;
        for (const auto& pt : need(e, "points", path, where)) {
          if (!pt.is_array() || pt.size() != 2) {
            throw InputError(file_message(path.string(), where + ".points: expected [x, y] pairs"));
          }
          p.points.push_back(pt[0].get<float>());
          p.points.push_back(pt[1].get<float>());
        }
        p.labels = e.contains("labels") ? e.at("labels").get<std::vector<int32_t>>()
                                        : std::vector<int32_t>(p.points.size() / 2, 1);
        if (p.labels.size() * 2 != p.points.size()) {
          throw InputError(file_message(path.string(), where + ": " +
                                                           std::to_string(p.points.size() / 2) +
                                                           " points but " +
                                                           std::to_string(p.labels.size()) + " labels"));
        }
      } else if (type == "box") {
        p.type = Sam2Prompt::Type::kBox;
        p.box = need(e, "box", path, where).get<std::vector<float>>();
        if (p.box.size() != 4) {
          throw InputError(file_message(path.string(), where + ".box: expected [x0, y0, x1, y1]"));
        }
      } else if (type == "mask") {
        p.type = Sam2Prompt::Type::kMask;
        p.mask_file = path.parent_path() / need(e, "mask", path, where).get<std::string>();
      } else {
        throw InputError(file_message(path.string(), where + ".type: expected points, box or mask, got '" +
                                                         type + "'"));
      }
      prompts.push_back(std::move(p));
    } catch (const json::exception& ex) {
      throw InputError(file_message(path.string(), where + ": " + ex.what()));
    }
  }
  return prompts;
}

int64_t PredictInput::height() const { return frames.empty() ? 0 : frames.front().size(0); }
int64_t PredictInput::width() const { return frames.empty() ? 0 : frames.front().size(1); }

PredictInput load_predict_input(const fs::path& path) {
  PredictInput in;
  in.path = path;
  if (!fs::exists(path)) throw InputError(file_message(path.string(), "no such file or folder"));
  if (fs::is_directory(path)) {
    in.kind = PredictInput::Kind::kFrames;
    for (const auto& f : list_frames(path)) {
      in.frames.push_back(read_image_rgb(f));
      in.frame_names.push_back(f.stem().string());
      if (in.frames.back().sizes() != in.frames.front().sizes()) {
        throw InputError(file_message(
            f.string(), fmt::format("frame is {}x{}, the first frame is {}x{}",
                                    in.frames.back().size(1), in.frames.back().size(0),
                                    in.width(), in.height())));
      }
    }
    if (in.frames.empty()) throw InputError(file_message(path.string(), "the folder has no image files"));
  } else if (!nifti_extension(path.string()).empty()) {
#if IRIS_HAVE_NIFTI
    in.kind = PredictInput::Kind::kVolume;
    in.volume = read_nifti(path);
    if (in.volume.data.dim() != 3) {
      throw InputError(file_message(path.string(), "expected a 3D volume, got " +
                                                       std::to_string(in.volume.data.dim()) + "D"));
    }
    // Slices along k become frames; intensities clipped to the 0.5..99.5 percentiles.
    const auto v = in.volume.data.to(torch::kFloat32);
    const auto flat = v.flatten();
    const auto sorted = std::get<0>(flat.sort());
    const auto n = sorted.numel();
    const double lo = sorted[static_cast<int64_t>(0.005 * (n - 1))].item<double>();
    const double hi = sorted[static_cast<int64_t>(0.995 * (n - 1))].item<double>();
    const auto scaled = ((v - lo) / std::max(hi - lo, 1e-6)).clamp(0, 1).mul(255).round().to(torch::kUInt8);
    for (int64_t k = 0; k < scaled.size(0); ++k) {
      in.frames.push_back(scaled[k].unsqueeze(-1).expand({-1, -1, 3}).contiguous());
      in.frame_names.push_back(fmt::format("slice_{:04d}", k));
    }
#else
    throw NotAvailableError("NIfTI input needs a build with IRIS_WITH_NIFTI=ON");
#endif
  } else if (is_image_file(path)) {
    in.kind = PredictInput::Kind::kImage;
    in.frames.push_back(read_image_rgb(path));
    in.frame_names.push_back(path.stem().string());
  } else {
    in.kind = PredictInput::Kind::kVideo;
    VideoReader reader(path);
    in.fps = reader.fps() > 0 ? reader.fps() : 25.0;
    for (auto f = reader.next(); f.defined(); f = reader.next()) {
      in.frame_names.push_back(fmt::format("frame_{:05d}", in.frames.size()));
      in.frames.push_back(f);
    }
    if (in.frames.empty()) throw InputError(file_message(path.string(), "the video has no frames"));
  }
  return in;
}

at::Tensor preprocess_frames(const std::vector<at::Tensor>& frames, int64_t s) {
  std::vector<at::Tensor> out;
  out.reserve(frames.size());
  const auto mean = torch::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1});
  const auto std = torch::tensor({0.229f, 0.224f, 0.225f}).view({3, 1, 1});
  for (const auto& f : frames) {
    auto x = f.permute({2, 0, 1}).to(torch::kFloat32).unsqueeze(0);
    if (x.size(2) != s || x.size(3) != s) {
      x = at::_upsample_bicubic2d_aa(x, {s, s}, /*align_corners=*/false).round().clamp(0, 255);
    }
    out.push_back((x.squeeze(0) / 255.0 - mean) / std);
  }
  return torch::stack(out);
}

PredictResult predict_sam2(Sam2Model& model, const PredictInput& input, const PredictOptions& o) {
  if (o.prompts.empty()) {
    throw UsageError("no prompts: give --point, --box, --mask or --prompts FILE.json");
  }
  const int64_t h = input.height(), w = input.width(), t = static_cast<int64_t>(input.frames.size());
  Sam2VideoPredictor predictor(model);
  VideoStateOptions state;
  state.offload_video_to_cpu = o.offload_video_to_cpu;
  state.offload_state_to_cpu = o.offload_state_to_cpu;
  predictor.init_state(preprocess_frames(input.frames, model->image_size()), h, w, state);

  int64_t first_frame = t;
  for (const auto& p : o.prompts) {
    if (p.frame < 0 || p.frame >= t) {
      throw InputError(fmt::format("prompt on frame {} for object {}: the input has {} frames (0..{})",
                                   p.frame, p.obj_id, t, t - 1));
    }
    first_frame = std::min(first_frame, p.frame);
    auto inside = [&](float x, float y) { return x >= 0 && y >= 0 && x <= w && y <= h; };
    if (p.type == Sam2Prompt::Type::kMask) {
      auto mask = read_image_raw(p.mask_file);
      if (mask.dim() == 3) mask = mask.amax(-1);
      if (mask.size(0) != h || mask.size(1) != w) {
        throw InputError(file_message(p.mask_file.string(),
                                      fmt::format("mask is {}x{}, the input frames are {}x{}",
                                                  mask.size(1), mask.size(0), w, h)));
      }
      predictor.add_new_mask(p.frame, p.obj_id, mask != 0);
    } else if (p.type == Sam2Prompt::Type::kBox) {
      if (!inside(p.box[0], p.box[1]) || !inside(p.box[2], p.box[3])) {
        throw InputError(fmt::format("box {},{},{},{} is outside the {}x{} frame", p.box[0], p.box[1],
                                     p.box[2], p.box[3], w, h));
      }
      predictor.add_new_points_or_box(p.frame, p.obj_id, std::nullopt, std::nullopt,
                                      torch::tensor(p.box));
    } else {
      for (size_t i = 0; i + 1 < p.points.size(); i += 2) {
        if (!inside(p.points[i], p.points[i + 1])) {
          throw InputError(fmt::format("point {},{} is outside the {}x{} frame", p.points[i],
                                       p.points[i + 1], w, h));
        }
      }
      const auto n = static_cast<int64_t>(p.labels.size());
      predictor.add_new_points_or_box(p.frame, p.obj_id, torch::tensor(p.points).reshape({n, 2}),
                                      torch::tensor(p.labels));
    }
  }

  PredictResult result;
  result.obj_ids = predictor.obj_ids();
  const auto ids = torch::tensor(result.obj_ids);
  std::vector<at::Tensor> labels(static_cast<size_t>(t));
  result.areas.assign(static_cast<size_t>(t), std::vector<int64_t>(result.obj_ids.size(), 0));
  std::vector<double> enc_ms, track_ms;
  Progress progress("sam2 tracking", t - first_frame + (o.reverse ? first_frame : 0), "frame");
  auto on_frame = [&](int64_t f, const at::Tensor& logits) {
    const auto l = logits.squeeze(1).cpu();  // [N, H, W]
    const auto [best, idx] = l.max(0);
    labels[f] = torch::where(best > 0, ids.index({idx}), torch::zeros({}, torch::kLong));
    for (size_t k = 0; k < result.obj_ids.size(); ++k) {
      result.areas[f][k] = (l[static_cast<int64_t>(k)] > 0).sum().item<int64_t>();
    }
    progress.advance();
  };
  predictor.propagate_in_video(on_frame);
  const auto& timing = predictor.last_timing();
  enc_ms.insert(enc_ms.end(), timing.encoder_ms.begin(), timing.encoder_ms.end());
  track_ms.insert(track_ms.end(), timing.tracking_ms.begin(), timing.tracking_ms.end());
  if (o.reverse && first_frame > 0) {
    predictor.propagate_in_video(on_frame, first_frame, std::nullopt, /*reverse=*/true);
    enc_ms.insert(enc_ms.end(), timing.encoder_ms.begin(), timing.encoder_ms.end());
    track_ms.insert(track_ms.end(), timing.tracking_ms.begin(), timing.tracking_ms.end());
  }
  progress.finish();
  result.encoder_ms = median(enc_ms);
  result.tracking_ms = median(track_ms);

  // Frames never reached (before the first prompt without --reverse) are empty.
  for (auto& l : labels) {
    if (!l.defined()) l = torch::zeros({h, w}, torch::kLong);
  }
  const int64_t max_id = *std::max_element(result.obj_ids.begin(), result.obj_ids.end());
  const auto label_type = max_id < 256 ? torch::kUInt8 : torch::kInt32;

  fs::create_directories(o.out);
  if (input.kind == PredictInput::Kind::kVolume) {
#if IRIS_HAVE_NIFTI
    Volume v = input.volume;
    v.data = torch::stack(labels).to(label_type);
    const auto file = o.out / "masks.nii.gz";
    write_nifti(file, v);
    result.written.push_back(file);
#endif
  } else {
    fs::create_directories(o.out / "masks");
    for (int64_t f = 0; f < t; ++f) {
      const auto file = o.out / "masks" / (input.frame_names[f] + ".png");
      write_image(file, labels[f].to(label_type));
      result.written.push_back(file);
    }
  }
  if (o.overlay) {
    if (input.kind == PredictInput::Kind::kVideo) {
      // MPEG-4 where OpenCV's build has an encoder for it, else Motion-JPEG (always built in).
      auto file = o.out / "overlay.mp4";
      std::unique_ptr<VideoWriter> writer;
      try {
        writer = std::make_unique<VideoWriter>(file, w, h, input.fps, "mp4v");
      } catch (const RuntimeFailure&) {
        file = o.out / "overlay.avi";
        writer = std::make_unique<VideoWriter>(file, w, h, input.fps, "MJPG");
      }
      for (int64_t f = 0; f < t; ++f) {
        writer->write(overlay_frame(input.frames[f], labels[f], result.obj_ids));
      }
      writer->close();
      result.written.push_back(file);
    } else {
      fs::create_directories(o.out / "overlay");
      for (int64_t f = 0; f < t; ++f) {
        const auto file = o.out / "overlay" / (input.frame_names[f] + ".png");
        write_image(file, overlay_frame(input.frames[f], labels[f], result.obj_ids));
        result.written.push_back(file);
      }
    }
  }

  json summary;
  static const char* kKinds[] = {"image", "frames", "video", "volume"};
  summary["input"] = input.path.string();
  summary["kind"] = kKinds[static_cast<int>(input.kind)];
  summary["frames"] = t;
  summary["height"] = h;
  summary["width"] = w;
  summary["image_size"] = model->image_size();
  summary["objects"] = result.obj_ids;
  summary["prompts"] = o.prompts.size();
  summary["offload"] = {{"video", o.offload_video_to_cpu}, {"state", o.offload_state_to_cpu}};
  json areas = json::object();
  for (size_t k = 0; k < result.obj_ids.size(); ++k) {
    std::vector<int64_t> a;
    for (const auto& row : result.areas) a.push_back(row[k]);
    areas[std::to_string(result.obj_ids[k])] = a;
  }
  summary["area_pixels"] = areas;
  summary["median_ms_per_frame"] = {{"image_encoder", result.encoder_ms},
                                    {"tracking", result.tracking_ms}};
  const auto file = o.out / "prediction.json";
  write_file_atomic(file, summary.dump(2) + "\n");
  result.written.push_back(file);
  return result;
}

}  // namespace iris::models::sam2
