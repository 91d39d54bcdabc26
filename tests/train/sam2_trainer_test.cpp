// SAM2 fine-tuning end to end on synthetic clips with the parity fixture's small model: the
// recipe's parts change and nothing else does, the baseline and every epoch are evaluated, the
// run folder holds what trackers read.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/build_info.h"
#include "data/synthetic_video.h"
#include "io/checkpoint.h"
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

}  // namespace
}  // namespace iris
