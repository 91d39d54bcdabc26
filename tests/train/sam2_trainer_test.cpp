// SAM2 fine-tuning end to end on synthetic clips with the parity fixture's small model: the
// recipe's parts change and nothing else does, the baseline and every epoch are evaluated, the
// run folder holds what trackers read.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>

#include "core/build_info.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "data/synthetic_video.h"
#include "io/checkpoint.h"
#include "sam2_train_util.h"
#include "state_dict_util.h"
#include "test_util.h"
#include "track/run_store.h"
#include "train/recipes.h"
#include "train/sam2_trainer.h"

namespace iris {
namespace {

namespace fs = std::filesystem;


TEST(Sam2Trainer, RecipeRunTrainsItsPartsAndRecordsBaselineAndEpochs) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  SyntheticVideoOptions s;
  s.videos = 1;
  s.frames = 8;
  s.width = 256;
  s.height = 256;
  s.seed = 3;
  write_synthetic_videos(s, dir / "train");
  s.seed = 4;
  s.frames = 4;
  write_synthetic_videos(s, dir / "val");

  Sam2TrainConfig c;
  c.run.root = (dir / "runs").string();
  c.run.name = "endo_box_md";
  c.recipe = "md";
  c.model.config = (test::sam2_fixture() / "config.yaml").string();
  c.model.checkpoint = (test::sam2_fixture() / "checkpoint.pt").string();
  c.model.prompt_type = "box";
  c.data.name = "synthetic";
  c.data.train = (dir / "train").string();
  c.data.val = (dir / "val").string();
  c.data.clip_length = 4;
  c.data.clip_stride = 4;
  c.train.max_epochs = 1;
  c.train.lr = 1e-3;
  const auto r = train_sam2(c);
  EXPECT_EQ(r.steps, 2);  // 8 frames = 2 clips of 4
  EXPECT_GT(r.trainable_parameters, 0);

  const auto start = io::select_state_dict(io::read_checkpoint(test::sam2_fixture() / "checkpoint.pt").root, "", "ckpt");
  const auto last = io::read_safetensors(fs::path(r.run_dir) / "checkpoints" / "last.safetensors").tensors;
  int64_t changed_md = 0;
  for (const auto& [name, t] : start) {
    const auto* after = last.find(name);
    ASSERT_NE(after, nullptr) << name;
    const bool same = torch::equal(t, *after);
    if (sam2_parameter_groups().group_of(name) != "md") {
      EXPECT_TRUE(same) << name << " changed outside the recipe";
    } else if (!same) {
      ++changed_md;
    }
  }
  EXPECT_GT(changed_md, 0);

  // Baseline (epoch 0) and epoch 1 evaluations in metrics.jsonl; the run reads back as a study run.
  const RunDir run = RunDir::existing(r.run_dir);
  int64_t evals = 0, train_rows = 0;
  for (const auto& row : run.read_metrics()) {
    if (row.contains("eval/Dice")) ++evals;
    if (row.contains("train/loss")) ++train_rows;
  }
  EXPECT_EQ(evals, 2);
  EXPECT_EQ(train_rows, 2);
  const auto summary = run.read_summary();
  EXPECT_TRUE(summary.contains("eval/Dice"));
  EXPECT_DOUBLE_EQ(summary["baseline/Dice"].get<double>(), r.baseline_dice);
  const auto record = track::read_run_folder(r.run_dir);
  EXPECT_EQ(record.dataset, "synthetic");
  EXPECT_EQ(record.prompt_type, "box");
  EXPECT_EQ(record.recipe, "md");
  EXPECT_EQ(record.trainable_modules, std::vector<std::string>{"mask_decoder"});
  EXPECT_FALSE(record.is_baseline);
}

TEST(Sam2Trainer, AStoppedRunResumesAtTheNextEpochAndEndsAsAnUninterruptedOne) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(test::sam2_fixture()))
    GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  test::write_tiny_train_and_val_videos(dir.path());
  // 4 clips of 2 frames, 2 clips per step: 2 steps an epoch, 3 epochs. Point prompts draw random
  // clicks and the memory attention has dropout: a resumed epoch must draw the same ones.
  Sam2TrainConfig c;
  c.run.root = (dir / "runs").string();
  c.run.threads = 1;
  c.recipe = "md+pe";
  c.model.config = (test::sam2_fixture() / "config.yaml").string();
  c.model.checkpoint = (test::sam2_fixture() / "checkpoint.pt").string();
  c.model.prompt_type = "point";
  c.data.train = (dir / "train").string();
  c.data.val = (dir / "val").string();
  c.data.clip_length = 2;
  c.data.clip_stride = 2;
  c.train.max_epochs = 3;
  c.train.grad_accum = 2;
  c.train.warmup = 0;
  c.train.lr = 1e-3;

  c.run.name = "whole";
  const auto whole = train_sam2(c);
  EXPECT_TRUE(whole.finished);
  EXPECT_EQ(whole.steps, 6);

  c.run.name = "parts";
  TrainSession session;
  session.stop_after = 1;
  const auto first = train_sam2(c, session, nullptr);
  EXPECT_FALSE(first.finished);
  EXPECT_EQ(first.steps, 2);
  const fs::path parts = dir / "runs" / "parts";
  EXPECT_FALSE(fs::exists(parts / "summary.json")) << "a stopped run is not finished";
  // An interruption in the middle of epoch 2 leaves rows the resumed session runs again.
  RunDir::existing(parts).append_metrics({{"step", 3}, {"epoch", 2}, {"train/loss", 9.0}});
  session.stop_after = 0;
  session.resume = parts.string();
  const auto rest = train_sam2(c, session, nullptr);
  EXPECT_TRUE(rest.finished);
  EXPECT_EQ(rest.resumed_from_epoch, 1);
  EXPECT_EQ(rest.steps, 6);
  EXPECT_EQ(rest.best_epoch, whole.best_epoch);
  EXPECT_DOUBLE_EQ(rest.baseline_dice, whole.baseline_dice);
  EXPECT_DOUBLE_EQ(rest.best_dice, whole.best_dice);
  EXPECT_EQ(rest.epoch_train_seconds.size(), 3u);

  test::expect_same_trained_weights(test::sam2_fixture() / "checkpoint.pt", dir / "runs/whole",
                                    parts, "3 epochs vs 1 + resumed 2");

  // The same rows, the interrupted session's extra row gone; the same summary.
  const auto rows_whole = RunDir::existing(dir / "runs/whole").read_metrics();
  const auto rows_parts = RunDir::existing(parts).read_metrics();
  ASSERT_EQ(rows_whole.size(), rows_parts.size());
  for (std::size_t i = 0; i < rows_whole.size(); ++i) {
    EXPECT_EQ(rows_whole[i].value("step", -1), rows_parts[i].value("step", -1)) << "row " << i;
    for (const char* key : {"train/loss", "eval/Dice", "lr"}) {
      if (!rows_whole[i].contains(key) || rows_whole[i][key].is_null()) continue;
      ASSERT_TRUE(rows_parts[i].contains(key)) << key << " row " << i;
      EXPECT_NEAR(rows_whole[i][key].get<double>(), rows_parts[i][key].get<double>(), 1e-6)
          << key << " row " << i;
    }
  }
  const auto summary_whole = RunDir::existing(dir / "runs/whole").read_summary();
  const auto summary_parts = RunDir::existing(parts).read_summary();
  EXPECT_EQ(summary_parts["steps"], 6);
  EXPECT_EQ(summary_parts["best_epoch"], summary_whole["best_epoch"]);
  EXPECT_NEAR(summary_parts["eval/Dice"].get<double>(), summary_whole["eval/Dice"].get<double>(),
              1e-6);

  // Resuming a finished run does nothing.
  const auto again = train_sam2(c, session, nullptr);
  EXPECT_TRUE(again.already_finished);
  EXPECT_EQ(again.steps, 6);

  // A damaged state file is named.
  fs::copy(parts, dir / "runs" / "broken", fs::copy_options::recursive);
  std::ofstream(dir / "runs/broken/checkpoints/resume.pt", std::ios::trunc) << "not a checkpoint";
  session.resume = (dir / "runs" / "broken").string();
  c.run.name = "broken";
  try {
    train_sam2(c, session, nullptr);
    ADD_FAILURE() << "a damaged resume.pt was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("resume.pt"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace iris
