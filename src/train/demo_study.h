// The reduced surgical fine-tuning study of `iris demo`, end to end on CPU in a few minutes: a
// small SAM2 (configs/sam2/demo_micro.yaml) is trained from random initialisation on synthetic
// surgical domain A ("pretraining"), then on domain B (same scenes and classes, another look)
// it is evaluated untrained (the baselines) and fine-tuned with a few recipes x prompt types,
// every run scored on a test split kept apart from the validation split, and the insights report
// is written over the run folders.
//
//   OUT/data/{a_train,a_val,a_test,b_train,b_val,b_test}/   synthetic clips (COCO-video)
//   OUT/pretrain/<runs>/                                      pretraining rounds on domain A
//   OUT/model/demo_micro.yaml, pretrained.safetensors         the model the study starts from
//   OUT/<dataset>_<prompt>_<recipe>__demo/                    baselines and fine-tuned runs
//   OUT/insights/                                             insights.md, .html, .json, plots
//   OUT/study.md                                              the study table
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace iris {

struct DemoStudyOptions {
  int64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;           // 0: LibTorch's default
  int64_t frame_size = 128;  // frames are square; the model's input size
  int64_t instruments = 2;   // per video
  int64_t clip_length = 4;
  // Loss weights of every run (IoU prediction and object score keep weight 1): Dice-led, as in
  // the reference study's runs, with a little focal loss for calibration.
  double loss_mask = 1.0;
  double loss_dice = 20.0;

  // Pretraining on domain A: rounds of one epoch per prompt type (point, box, mask), all parts
  // trainable, each round continuing from the last weights of the previous one.
  int64_t pretrain_videos = 12;
  int64_t pretrain_frames = 8;
  int64_t pretrain_rounds = 4;
  double pretrain_lr = 2e-3;

  // The study on domain B.
  int64_t train_videos = 4;
  int64_t val_videos = 2;
  int64_t test_videos = 3;
  int64_t frames = 8;
  int64_t epochs = 2;
  double lr = 1e-3;
  std::vector<std::string> recipes{"md", "pe+md", "ie+pe+md", "ie+pe+md+mem"};
  std::vector<std::string> prompt_types{"point", "box", "mask"};
};

// Scores of one run on the test split (Dice, mean over classes of videos of frames).
struct DemoStudyRun {
  std::string name, recipe, prompt_type, run_dir;
  bool baseline = false;
  double test_dice = 0.0, test_miou = 0.0, val_dice = 0.0;
  double seconds = 0.0;
};

struct DemoStudyResult {
  std::string study_dir, insights_dir, pretrained_checkpoint;
  // The pretrained model with point prompts on the test splits of both domains.
  double pretrain_dice_a = 0.0, pretrain_dice_b = 0.0;
  std::vector<DemoStudyRun> runs;  // baselines first, then recipes x prompt types
  double pretrain_seconds = 0.0, seconds = 0.0;
};

// Runs the whole study into `out_dir` (created; must not hold a study already). Deterministic by
// `options.seed` on one thread. `progress` receives one line per step (may be empty).
DemoStudyResult run_demo_study(const std::string& out_dir, const DemoStudyOptions& options,
                               const std::function<void(const std::string&)>& progress = {});

// Markdown: test Dice per recipe (rows) x prompt type (columns), baseline first, with the change
// against the baseline; and the pretrained model's Dice on both domains.
std::string demo_study_markdown(const DemoStudyResult& result);

// The model config the study uses (the text of configs/sam2/demo_micro.yaml, built in).
const char* demo_micro_config_yaml();

}  // namespace iris
