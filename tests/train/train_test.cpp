#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#if IRIS_HAVE_NIFTI
#include "data/atlas.h"
#include "models/iris/memory_bank.h"
#include "train/iris_trainer.h"
#endif
#include "train/losses.h"
#include "train/schedule.h"
#include "test_util.h"

namespace iris {
namespace {

TEST(Losses, DiceAndBceOnHandComputedCases) {
  // Confident, correct logits: Dice loss ~0; all-wrong: ~1.
  const auto target = torch::tensor({1.f, 1.f, 0.f, 0.f}).view({1, 1, 2, 2});
  EXPECT_NEAR(soft_dice_loss(target * 40 - 20, target).item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(soft_dice_loss(20 - target * 40, target).item<double>(), 0.8, 1e-6)
      << "(2·0 + 1) / (2 + 2 + 1) = 0.2";
  // BCE of zero logits is log 2.
  EXPECT_NEAR(bce_loss(torch::zeros({1, 1, 2, 2}), target).item<double>(), std::log(2.0), 1e-6);
  // Hard Dice: both empty counts as a correct "absent" (1); one pixel of two predicted: 2/3.
  const auto dice = hard_dice(torch::tensor({-1.f, -1.f, 1.f, -1.f, -1.f, -1.f, -1.f, -1.f}).view({1, 2, 2, 2}),
                              torch::tensor({0.f, 0.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f}).view({1, 2, 2, 2}));
  EXPECT_NEAR(dice[0][0].item<double>(), 2.0 / 3.0, 1e-6);
  EXPECT_NEAR(dice[0][1].item<double>(), 1.0, 1e-6);
}

TEST(LrSchedule, WarmupThenCosineAndExponential) {
  LrSchedule s{1.0, 10, 110, "cosine", 0.1};
  EXPECT_DOUBLE_EQ(s.lr(1), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(10), 1.0);
  EXPECT_NEAR(s.lr(60), 0.1 + 0.45, 1e-12) << "halfway: floor + (peak - floor)/2";
  EXPECT_NEAR(s.lr(110), 0.1, 1e-12);
  LrSchedule e{1.0, 0, 100, "exponential", 0.01};
  EXPECT_NEAR(e.lr(50), 0.1, 1e-12);
  EXPECT_NEAR(e.lr(100), 0.01, 1e-12);
}

#if IRIS_HAVE_NIFTI
// A tiny 2D atlas run in `root`/`name`, with more overrides after the size keys.
IrisTrainConfig tiny_atlas_config(const fs::path& root, const std::string& name,
                                  std::vector<std::string> overrides) {
  std::vector<std::string> keys{"run.root=" + root.string(), "run.name=" + name,
                                "model.base_channels=4",     "model.stages=3",
                                "model.query_tokens=2",      "model.heads=2",
                                "data.slice_size=48"};
  keys.insert(keys.end(), overrides.begin(), overrides.end());
  return load_config<IrisTrainConfig>({"", keys});
}

TEST(IrisTrainer, ShortRunWritesTheRunFolder) {
  if (!is_mricron_atlas_dir(kMricronTemplates)) GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  auto config = tiny_atlas_config(dir.path(), "smoke",
                                  {"optim.iterations=3", "optim.batch=1", "validation.every=2",
                                   "validation.episodes=2"});
  const TrainResult r = train_iris(config);
  EXPECT_EQ(r.steps, 3);
  const RunDir run = RunDir::existing(dir / "smoke");
  const auto rows = run.read_metrics();
  ASSERT_EQ(rows.size(), 3u + 2u) << "3 step rows and validations at steps 2 and 3";
  EXPECT_TRUE(rows[0].contains("train/loss"));
  EXPECT_TRUE(rows[2].contains("val/dice_per_class"));
  EXPECT_TRUE(fs::exists(run.checkpoints_dir() / "best.pt"));
  EXPECT_TRUE(fs::exists(run.checkpoints_dir() / "last.pt"));
  EXPECT_EQ(run.read_summary()["steps"], 3);
  // The resolved config reloads as is.
  const auto again = load_config<IrisTrainConfig>({run.config_path().string(), {}});
  EXPECT_EQ(again.run.name, "smoke");
  EXPECT_EQ(again.model.options.stages, 3);
  EXPECT_THROW(train_iris(config), InputError) << "the run folder exists already";
  config.run.name = "bad";
  config.data.slice_size = 50;
  EXPECT_THROW(train_iris(config), ConfigError);
}

// Held-out classes: the validated classes never train (the memory bank, which every training
// episode of an atlas class updates, holds none of them), with random and composite classes on.
TEST(IrisTrainer, HeldOutClassesAreValidatedAndNeverTrained) {
  if (!is_mricron_atlas_dir(kMricronTemplates)) GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  auto config = tiny_atlas_config(
      dir.path(), "held",
      {"data.composite_classes=0.3", "data.random_classes=0.3", "optim.iterations=12",
       "optim.batch=2", "validation.every=12", "validation.episodes=6"});
  // Validated classes, and how many of them the memory bank of the run holds.
  auto validated_in_bank = [&](const std::string& name, int64_t every_nth_class) {
    config.run.name = name;
    config.data.validation_every_nth_class = every_nth_class;
    train_iris(config);
    const RunDir run = RunDir::existing(dir / name);
    std::set<std::string> validated;
    for (const auto& row : run.read_metrics()) {
      if (!row.contains("val/dice_per_class")) continue;
      for (const auto& [cls, dice] : row["val/dice_per_class"].items()) validated.insert(cls);
    }
    const auto bank = models::read_memory_bank((run.checkpoints_dir() / "last.pt").string());
    EXPECT_GT(bank.size(), 0u);
    int64_t in_bank = 0;
    for (const auto& cls : validated) in_bank += bank.contains("aal", cls);
    return std::make_pair(static_cast<int64_t>(validated.size()), in_bank);
  };
  const auto [held_validated, held_in_bank] = validated_in_bank("held", 4);
  EXPECT_GT(held_validated, 0);
  EXPECT_EQ(held_in_bank, 0) << "a held-out class was trained";
  const auto [all_validated, all_in_bank] = validated_in_bank("all", 0);
  EXPECT_GT(all_in_bank, 0) << "without held-out classes, validated classes train";

  config.run.name = "bad";
  config.data.composite_classes = 1.5;
  EXPECT_THROW(train_iris(config), ConfigError);
  config.data.composite_classes = 0;
  config.data.validation_every_nth_class = 1;  // holds out every class
  EXPECT_THROW(train_iris(config), ConfigError);
}
#endif

}  // namespace
}  // namespace iris
