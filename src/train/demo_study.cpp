#include "train/demo_study.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "core/atomic_file.h"
#include "core/device.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/run_dir.h"
#include "data/synthetic_video.h"
#include "data/video_dataset.h"
#include "eval/video_eval.h"
#include "io/checkpoint.h"
#include "models/sam2/sam2_config.h"
#include "models/sam2/sam2_loader.h"
#include "report/insights_writer.h"
#include "track/run_store.h"
#include "train/demo_micro_config.h"
#include "train/sam2_trainer.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
namespace sam2 = models::sam2;
using Clock = std::chrono::steady_clock;

constexpr const char* kDataset = "surgical-b";

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Split seeds are far apart so no two splits share a scene.
fs::path write_split(const fs::path& data, const std::string& name, SyntheticDomain domain,
                     int64_t videos, int64_t frames, uint64_t seed, const DemoStudyOptions& o) {
  SyntheticVideoOptions s;
  s.videos = videos;
  s.frames = frames;
  s.width = o.frame_size;
  s.height = o.frame_size;
  s.instruments = o.instruments;
  s.seed = seed;
  s.layout = VideoLayout::kCocoVideo;
  s.domain = domain;
  const fs::path out = data / name;
  write_synthetic_videos(s, out);
  return out;
}

double macro_or_zero(double v) {
  return std::isnan(v) ? 0.0 : v;
}

// The model in `checkpoint` scored on `dataset` with the evaluation protocol; the tables go to
// `out` when it is not empty.
eval::VideoEvalResult evaluate(const fs::path& config, const fs::path& checkpoint,
                               const VideoDataset& dataset, const std::string& prompt,
                               uint64_t seed, const c10::Device& device, const fs::path& out) {
  auto model = sam2::load_sam2(config, checkpoint);
  model->to(device);
  model->eval();
  eval::VideoEvalOptions options;
  options.prompt = parse_prompt_type(prompt);
  options.seed = seed;
  auto r = eval::evaluate_sam2_video(model, dataset, options);
  if (!out.empty()) eval::write_video_eval(r, options, out);
  return r;
}

// train_sam2 selects the best epoch on the validation split; the study's numbers are those of the
// selected weights on the test split. Validation metrics move to val/*, test metrics become the
// run's eval/* (what run tables and the insights report read), and test/* keep them explicitly.
void score_on_test(DemoStudyRun& run, const fs::path& config, const VideoDataset& test,
                   uint64_t seed, const c10::Device& device) {
  const RunDir dir = RunDir::existing(run.run_dir);
  const auto r = evaluate(config, dir.checkpoints_dir() / "best.safetensors", test, run.prompt_type,
                          seed, device, dir.path() / "test");
  nlohmann::json summary = dir.read_summary();
  for (const char* m : {"Dice", "mIoU", "MAE", "NSD"}) {
    const std::string key = fmt::format("eval/{}", m);
    if (summary.contains(key)) summary[fmt::format("val/{}", m)] = summary[key];
  }
  auto v = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
  const std::map<std::string, double> test_metrics{{"Dice", r.dice_summary.macro},
                                                   {"mIoU", r.iou_summary.macro},
                                                   {"MAE", r.mae_summary.macro},
                                                   {"NSD", r.nsd_summary.macro}};
  for (const auto& [m, value] : test_metrics) {
    summary[fmt::format("eval/{}", m)] = v(value);
    summary[fmt::format("test/{}", m)] = v(value);
  }
  summary["eval/split"] = "test";
  dir.write_summary(summary);
  run.test_dice = macro_or_zero(r.dice_summary.macro);
  run.test_miou = macro_or_zero(r.iou_summary.macro);
  run.val_dice = summary.contains("val/Dice") && summary["val/Dice"].is_number()
                     ? summary["val/Dice"].get<double>()
                     : 0.0;
}

io::StateDict state_of(torch::nn::Module& m) {
  io::StateDict sd;
  for (const auto& p : m.named_parameters())
    sd.insert(p.key(), p.value().detach().cpu().contiguous());
  for (const auto& b : m.named_buffers()) sd.insert(b.key(), b.value().detach().cpu().contiguous());
  return sd;
}

}  // namespace

const char* demo_micro_config_yaml() {
  return kDemoMicroConfigYaml;
}

DemoStudyResult run_demo_study(const std::string& out_dir, const DemoStudyOptions& o,
                               const std::function<void(const std::string&)>& progress) {
  const auto start = Clock::now();
  auto say = [&](const std::string& line) {
    spdlog::info("{}", line);
    if (progress) progress(line);
  };
  if (o.recipes.empty() || o.prompt_types.empty() || o.epochs < 1 || o.pretrain_rounds < 0) {
    throw ConfigError("demo study: needs recipes, prompt types and at least one epoch");
  }
  const fs::path out = out_dir;
  if (fs::exists(out / "model" / "pretrained.safetensors") || fs::exists(out / "insights")) {
    throw InputError(file_message(out.string(), "a study exists already; choose another folder"));
  }
  fs::create_directories(out / "model");
  const auto seed = static_cast<uint64_t>(o.seed);
  const c10::Device device = resolve_device(o.device);
  set_threads(o.threads);

  DemoStudyResult result;
  result.study_dir = out.string();

  // Data: both domains from disjoint seeds; B's validation split picks epochs, its test split
  // gives every number of the study.
  const fs::path data = out / "data";
  const auto a_train = write_split(data, "a_train", SyntheticDomain::kA, o.pretrain_videos,
                                   o.pretrain_frames, seed * 1000 + 1, o);
  const auto a_val =
      write_split(data, "a_val", SyntheticDomain::kA, 1, o.frames, seed * 1000 + 2, o);
  const auto a_test =
      write_split(data, "a_test", SyntheticDomain::kA, o.test_videos, o.frames, seed * 1000 + 3, o);
  const auto b_train = write_split(data, "b_train", SyntheticDomain::kB, o.train_videos, o.frames,
                                   seed * 1000 + 11, o);
  const auto b_val =
      write_split(data, "b_val", SyntheticDomain::kB, o.val_videos, o.frames, seed * 1000 + 12, o);
  const auto b_test = write_split(data, "b_test", SyntheticDomain::kB, o.test_videos, o.frames,
                                  seed * 1000 + 13, o);
  say(fmt::format("study data: domain A {} + 1 + {} videos, domain B {} + {} + {} videos of {}x{}",
                  o.pretrain_videos, o.test_videos, o.train_videos, o.val_videos, o.test_videos,
                  o.frame_size, o.frame_size));

  // The model: demo_micro.yaml with random weights (seeded).
  const fs::path config = out / "model" / "demo_micro.yaml";
  write_file_atomic(config, kDemoMicroConfigYaml);
  fs::path weights = out / "model" / "random_init.safetensors";
  {
    torch::manual_seed(seed);
    sam2::Sam2Model model(sam2::load_sam2_config(config));
    io::write_safetensors(weights, state_of(*model));
  }

  // Pretraining on domain A: every part trains, the prompt type rotates so the model learns all
  // three; each round continues from the last weights of the one before.
  const auto pretrain_start = Clock::now();
  const std::vector<std::string> pretrain_prompts{"point", "box", "mask"};
  for (int64_t round = 0; round < o.pretrain_rounds; ++round) {
    for (const auto& prompt : pretrain_prompts) {
      Sam2TrainConfig c;
      c.run.root = (out / "pretrain").string();
      c.run.name = fmt::format("r{}_{}", round + 1, prompt);
      c.run.seed = o.seed + round;
      c.run.device = o.device;
      c.run.threads = o.threads;
      c.recipe = "ie+pe+md+mem";
      c.model.config = config.string();
      c.model.checkpoint = weights.string();
      c.model.prompt_type = prompt;
      c.data.name = "surgical-a";
      c.data.train = a_train.string();
      c.data.val = a_val.string();
      c.data.clip_length = o.clip_length;
      c.data.clip_stride = o.clip_length;
      c.train.max_epochs = 1;
      c.train.lr = o.pretrain_lr;
      c.train.warmup = round == 0 ? 4 : 0;
      c.train.grad_clip = 1.0;
      c.loss.mask = o.loss_mask;
      c.loss.dice = o.loss_dice;
      const auto r = train_sam2(c);
      weights = fs::path(r.run_dir) / "checkpoints" / "last.safetensors";
      say(fmt::format("pretraining round {}/{} ({} prompts): validation Dice on A {:.4f}",
                      round + 1, o.pretrain_rounds, prompt, r.best_dice));
    }
  }
  const fs::path pretrained = out / "model" / "pretrained.safetensors";
  fs::copy_file(weights, pretrained, fs::copy_options::overwrite_existing);
  result.pretrained_checkpoint = pretrained.string();
  result.pretrain_seconds = seconds_since(pretrain_start);

  const auto test_a = read_video_dataset(a_test);
  const auto test_b = read_video_dataset(b_test);
  result.pretrain_dice_a = macro_or_zero(
      evaluate(config, pretrained, test_a, "point", seed, device, out / "model" / "eval_a_point")
          .dice_summary.macro);
  result.pretrain_dice_b = macro_or_zero(
      evaluate(config, pretrained, test_b, "point", seed, device, out / "model" / "eval_b_point")
          .dice_summary.macro);
  say(fmt::format("pretrained in {:.0f} s: test Dice with point prompts {:.4f} on A, {:.4f} on B",
                  result.pretrain_seconds, result.pretrain_dice_a, result.pretrain_dice_b));

  // The study: one baseline per prompt type, then every recipe x prompt type, all from the
  // pretrained weights with the same seed.
  std::vector<std::pair<std::string, std::string>> plan;  // (recipe, prompt)
  for (const auto& p : o.prompt_types) plan.emplace_back("none", p);
  for (const auto& recipe : o.recipes) {
    for (const auto& p : o.prompt_types) plan.emplace_back(recipe, p);
  }
  int64_t done = 0;
  for (const auto& [recipe, prompt] : plan) {
    const auto t0 = Clock::now();
    DemoStudyRun run;
    run.recipe = recipe;
    run.prompt_type = prompt;
    run.baseline = recipe == "none";
    run.name = fmt::format("{}_{}_{}__demo", kDataset, prompt, recipe);
    Sam2TrainConfig c;
    c.run.root = out.string();
    c.run.name = run.name;
    c.run.seed = o.seed;
    c.run.device = o.device;
    c.run.threads = o.threads;
    c.recipe = recipe;
    c.model.config = config.string();
    c.model.checkpoint = pretrained.string();
    c.model.prompt_type = prompt;
    c.data.name = kDataset;
    c.data.train = b_train.string();
    c.data.val = b_val.string();
    c.data.clip_length = o.clip_length;
    c.data.clip_stride = o.clip_length;
    c.baseline = run.baseline;  // marked in its config, as every baseline run
    c.train.max_epochs = run.baseline ? 0 : o.epochs;
    c.train.lr = o.lr;
    c.train.grad_clip = 1.0;
    c.loss.mask = o.loss_mask;
    c.loss.dice = o.loss_dice;
    run.run_dir = train_sam2(c).run_dir;
    score_on_test(run, config, test_b, seed, device);
    run.seconds = seconds_since(t0);
    ++done;
    say(fmt::format("study {}/{}: {} test Dice {:.4f} ({:.0f} s)", done, plan.size(), run.name,
                    run.test_dice, run.seconds));
    result.runs.push_back(std::move(run));
  }
  stop_log_file();

  // The insights report over the study's run folders.
  const track::RunScan scan = track::RunStore(out).scan(true);
  for (const auto& p : scan.problems) spdlog::warn("{}: skipped: {}", p.folder, p.message);
  const auto report = report::build_insights_report(track::to_run_table(scan.runs, out.string()));
  const auto files = report::write_insights_report(report, out / "insights");
  result.insights_dir = (out / "insights").string();
  result.seconds = seconds_since(start);
  write_file_atomic(out / "study.md", demo_study_markdown(result));
  say(fmt::format("study finished in {:.0f} s; insights report {}", result.seconds,
                  files.markdown.string()));
  return result;
}

std::string demo_study_markdown(const DemoStudyResult& r) {
  std::vector<std::string> prompts, recipes;
  std::map<std::pair<std::string, std::string>, const DemoStudyRun*> cell;
  std::map<std::string, double> baseline;
  for (const auto& run : r.runs) {
    if (std::find(prompts.begin(), prompts.end(), run.prompt_type) == prompts.end()) {
      prompts.push_back(run.prompt_type);
    }
    const std::string row = run.baseline ? "baseline" : run.recipe;
    if (std::find(recipes.begin(), recipes.end(), row) == recipes.end()) recipes.push_back(row);
    cell[{row, run.prompt_type}] = &run;
    if (run.baseline) baseline[run.prompt_type] = run.test_dice;
  }
  std::string md = "# Surgical fine-tuning study (synthetic domain A -> domain B)\n\n";
  md += fmt::format(
      "Pretrained on domain A from random initialisation ({:.0f} s). Test Dice with point "
      "prompts: {:.4f} on domain A, {:.4f} on domain B.\n\n",
      r.pretrain_seconds, r.pretrain_dice_a, r.pretrain_dice_b);
  md +=
      "Test Dice on domain B (change against the untrained baseline of the same prompt type):\n\n";
  md += "| recipe |";
  for (const auto& p : prompts) md += " " + p + " |";
  md += "\n|---|";
  for (size_t i = 0; i < prompts.size(); ++i) md += "---:|";
  md += "\n";
  for (const auto& row : recipes) {
    md += "| " + row + " |";
    for (const auto& p : prompts) {
      const auto it = cell.find({row, p});
      if (it == cell.end()) {
        md += " |";
        continue;
      }
      const double d = it->second->test_dice;
      if (row == "baseline" || !baseline.count(p)) {
        md += fmt::format(" {:.4f} |", d);
      } else {
        md += fmt::format(" {:.4f} ({:+.4f}) |", d, d - baseline[p]);
      }
    }
    md += "\n";
  }
  md += fmt::format("\nStudy time {:.0f} s. Runs under {}, insights report under {}.\n", r.seconds,
                    r.study_dir, r.insights_dir);
  return md;
}

}  // namespace iris
