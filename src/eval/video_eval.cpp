#include "eval/video_eval.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <map>

#include "core/atomic_file.h"
#include "core/progress.h"
#include "models/sam2/sam2_predict.h"
#include "models/sam2/video_predictor.h"

namespace iris::eval {
namespace {

namespace sam2 = models::sam2;
using nlohmann::json;

json summary_json(const Aggregate& a) {
  json per_class = json::object();
  for (const auto& [cls, v] : a.per_class) per_class[cls] = v;
  json per_video = json::object();
  for (const auto& [cls, videos] : a.per_video_class) {
    for (const auto& [video, v] : videos) per_video[video][cls] = v;
  }
  return {{"macro", std::isnan(a.macro) ? json(nullptr) : json(a.macro)},
          {"per_class", per_class},
          {"per_video", per_video},
          {"scored", a.scored},
          {"skipped", a.skipped}};
}

}  // namespace

VideoEvalResult evaluate_sam2_video(sam2::Sam2Model& model, const VideoDataset& dataset,
                                    const VideoEvalOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  VideoEvalResult result;
  std::mt19937_64 rng(o.seed);
  MetricOptions metric_options;
  metric_options.ignore_empty = o.ignore_empty;
  Progress progress("eval sam2", static_cast<int64_t>(dataset.videos.size()), "video");
  for (const auto& video : dataset.videos) {
    const int64_t t_count = o.max_frames > 0
                                ? std::min<int64_t>(o.max_frames, static_cast<int64_t>(video.frames.size()))
                                : static_cast<int64_t>(video.frames.size());
    if (t_count == 0) continue;
    std::vector<at::Tensor> images;
    std::map<int64_t, std::vector<at::Tensor>> truth;  // class -> per-frame [H, W] bool
    std::map<int64_t, std::string> names;
    for (int64_t t = 0; t < t_count; ++t) {
      const auto& frame = video.frames[static_cast<size_t>(t)];
      images.push_back(load_frame_image(frame));
      for (const auto& obj : load_object_masks(dataset, frame)) {
        const auto* cls = dataset.find_class(obj.class_value);
        if (cls && cls->background) continue;
        auto& frames = truth[obj.class_value];
        frames.resize(static_cast<size_t>(t_count));
        frames[static_cast<size_t>(t)] = frames[static_cast<size_t>(t)].defined()
                                             ? frames[static_cast<size_t>(t)] | (obj.mask != 0)
                                             : (obj.mask != 0);
        names[obj.class_value] = cls ? cls->name : obj.name;
      }
    }
    const int64_t h = images.front().size(0), w = images.front().size(1);
    for (auto& [cls, frames] : truth) {
      for (auto& f : frames) {
        if (!f.defined()) f = torch::zeros({h, w}, torch::kBool);
      }
    }

    sam2::Sam2VideoPredictor predictor(model);
    if (o.encoder) {
      predictor.set_backbone_fn([&](int64_t t, const at::Tensor& image) {
        return o.encoder->forward_image(
            image, {dataset.root.string(), video.id, video.frames[static_cast<size_t>(t)].index});
      });
    }
    predictor.init_state(sam2::preprocess_frames(images, model->image_size()), h, w);
    std::vector<EvalObject> objects;
    for (const auto& [cls, frames] : truth) {
      EvalObject obj{video.id, cls, names[cls], 0, false};
      int64_t first = -1;
      for (int64_t t = 0; t < t_count && first < 0; ++t) {
        if (frames[static_cast<size_t>(t)].any().item<bool>()) first = t;
      }
      if (first < 0) continue;
      obj.first_frame = first;
      const auto prompt = simulate_prompt(frames[static_cast<size_t>(first)].to(torch::kUInt8),
                                          o.prompt, o.prompt_options, rng);
      if (prompt) {
        obj.prompted = true;
        if (o.prompt == PromptType::kPoint) {
          predictor.add_new_points_or_box(first, cls, prompt->point_coords, prompt->point_labels);
        } else if (o.prompt == PromptType::kBox) {
          predictor.add_new_points_or_box(first, cls, std::nullopt, std::nullopt, prompt->box);
        } else {
          predictor.add_new_mask(first, cls, prompt->mask);
        }
      }
      objects.push_back(obj);
    }
    if (predictor.obj_ids().empty()) continue;
    std::map<int64_t, int64_t> first_frame_of;
    for (const auto& obj : objects) first_frame_of[obj.class_value] = obj.first_frame;

    predictor.propagate_in_video([&](int64_t t, const at::Tensor& logits) {
      const auto& ids = predictor.obj_ids();
      for (size_t k = 0; k < ids.size(); ++k) {
        const int64_t cls = ids[k];
        auto prob = torch::sigmoid(logits[static_cast<int64_t>(k)][0].cpu());
        auto pred = logits[static_cast<int64_t>(k)][0].cpu() > 0;
        // Before its prompt the object has not been given to the tracker: nothing is predicted.
        if (t < first_frame_of[cls]) {
          pred = torch::zeros_like(pred);
          prob = torch::zeros_like(prob);
        }
        const auto g = truth[cls][static_cast<size_t>(t)];
        const auto p4 = pred.unsqueeze(0).unsqueeze(0), g4 = g.unsqueeze(0).unsqueeze(0);
        const auto& name = names[cls];
        result.dice.push_back({video.id, t, name, dice(p4, g4, metric_options)[0][0].item<double>()});
        result.iou.push_back({video.id, t, name, iou(p4, g4, metric_options)[0][0].item<double>()});
        result.mae.push_back({video.id, t, name,
                              mean_absolute_error(prob.unsqueeze(0).unsqueeze(0), g4.to(torch::kFloat))[0][0]
                                  .item<double>()});
        result.nsd.push_back({video.id, t, name, surface_dice(p4, g4, o.nsd_tolerance)[0][0].item<double>()});
      }
    });
    result.objects.insert(result.objects.end(), objects.begin(), objects.end());
    ++result.videos;
    result.frames += t_count;
    progress.advance();
  }
  progress.finish();
  result.dice_summary = aggregate(result.dice);
  result.iou_summary = aggregate(result.iou);
  result.mae_summary = aggregate(result.mae);
  result.nsd_summary = aggregate(result.nsd);
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

void write_video_eval(const VideoEvalResult& r, const VideoEvalOptions& o,
                      const std::filesystem::path& out) {
  std::filesystem::create_directories(out);
  json objects = json::array();
  int64_t late = 0;
  for (const auto& obj : r.objects) {
    late += obj.first_frame > 0 ? 1 : 0;
    objects.push_back({{"video", obj.video},
                       {"class", obj.class_name},
                       {"class_value", obj.class_value},
                       {"prompt_frame", obj.first_frame},
                       {"prompted", obj.prompted}});
  }
  json j;
  j["protocol"] = {{"prompt", prompt_type_name(o.prompt)},
                   {"prompt_frame", "first frame each object appears in"},
                   {"seed", o.seed},
                   {"nsd_tolerance_pixels", o.nsd_tolerance},
                   {"ignore_empty", o.ignore_empty},
                   {"mae_unit", "fraction in [0, 1] (sigmoid probability vs binary truth)"},
                   {"aggregation", "frame -> video -> class (macro)"}};
  j["videos"] = r.videos;
  j["frames"] = r.frames;
  j["seconds"] = r.seconds;
  j["objects"] = objects;
  j["objects_appearing_after_first_frame"] = late;
  j["dice"] = summary_json(r.dice_summary);
  j["iou"] = summary_json(r.iou_summary);
  j["mae"] = summary_json(r.mae_summary);
  j["nsd"] = summary_json(r.nsd_summary);
  write_file_atomic(out / "eval.json", j.dump(2) + "\n");

  std::string md = fmt::format(
      "# SAM2 evaluation\n\n{} videos, {} frames; {} prompts on the first frame each object appears in "
      "({} objects appear after their video's first frame). Scores per (frame, class), averaged "
      "frame -> video -> class; MAE is a fraction in [0, 1]; NSD at {} px.\n\n"
      "| class | Dice | IoU | MAE | NSD |\n| --- | --- | --- | --- | --- |\n",
      r.videos, r.frames, prompt_type_name(o.prompt), late, o.nsd_tolerance);
  auto cell = [](const Aggregate& a, const std::string& cls) {
    const auto it = a.per_class.find(cls);
    return it == a.per_class.end() ? std::string("—") : fmt::format("{:.4f}", it->second);
  };
  for (const auto& [cls, v] : r.dice_summary.per_class) {
    md += fmt::format("| {} | {} | {} | {} | {} |\n", cls, cell(r.dice_summary, cls),
                      cell(r.iou_summary, cls), cell(r.mae_summary, cls), cell(r.nsd_summary, cls));
  }
  auto macro = [](const Aggregate& a) {
    return std::isnan(a.macro) ? std::string("—") : fmt::format("{:.4f}", a.macro);
  };
  md += fmt::format("| **macro** | {} | {} | {} | {} |\n", macro(r.dice_summary), macro(r.iou_summary),
                    macro(r.mae_summary), macro(r.nsd_summary));
  write_file_atomic(out / "eval.md", md);
}

}  // namespace iris::eval
