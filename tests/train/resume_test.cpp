// Exact resume: a run stopped after N steps and continued with --resume logs the same values as an
// uninterrupted run (CPU).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/run_dir.h"
#if IRIS_HAVE_NIFTI
#include "data/atlas.h"
#include "train/iris_trainer.h"
#endif
#include "test_util.h"

namespace iris {
namespace {

#if IRIS_HAVE_NIFTI

IrisTrainConfig tiny_config(const fs::path& root, const std::string& name) {
  return load_config<IrisTrainConfig>(
      {"",
       {"run.root=" + root.string(), "run.name=" + name, "run.threads=1", "model.base_channels=4",
        "model.stages=3", "model.query_tokens=2", "model.heads=2", "data.slice_size=48",
        "optim.iterations=8", "optim.warmup=2", "optim.batch=2", "validation.every=3",
        "validation.episodes=2", "checkpoint_every=0"}});
}

// Timing and memory differ between any two runs; everything else must match.
bool is_measurement(const std::string& key) {
  return key.rfind("time/", 0) == 0 || key.rfind("memory/", 0) == 0 || key == "samples_per_s";
}

void expect_same_values(const nlohmann::json& a, const nlohmann::json& b,
                        const std::string& where) {
  ASSERT_EQ(a.type(), b.type()) << where;
  if (a.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (is_measurement(key)) continue;
      ASSERT_TRUE(b.contains(key)) << where << ": " << key;
      expect_same_values(value, b[key], where + "." + key);
    }
    for (const auto& [key, value] : b.items()) EXPECT_TRUE(a.contains(key)) << where << ": " << key;
  } else if (a.is_number_float()) {
    const double x = a.get<double>(), y = b.get<double>();
    EXPECT_LE(std::abs(x - y), 1e-6 * std::max(1.0, std::abs(x)))
        << where << ": " << x << " vs " << y;
  } else {
    EXPECT_EQ(a, b) << where;
  }
}

TEST(Resume, StoppedAndResumedRunLogsTheSameValuesAsAnUninterruptedOne) {
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  const TrainResult straight = train_iris(tiny_config(dir.path(), "straight"));
  ASSERT_TRUE(straight.finished);

  const TrainResult first = train_iris(tiny_config(dir.path(), "split"), {"", 4});
  EXPECT_EQ(first.steps, 4);
  EXPECT_FALSE(first.finished);
  const RunDir split = RunDir::existing(dir / "split");
  EXPECT_FALSE(fs::exists(split.summary_path())) << "a stopped run has no summary";
  // A crash after the checkpoint leaves rows of steps that will run again; resume drops them.
  append_line(split.metrics_path(),
              R"({"step": 5, "train/loss": 123.0, "train/dice": 0.0, "lr": 0.0})");

  const TrainResult second =
      train_iris(tiny_config(dir.path(), "split"), {split.path().string(), 0});
  EXPECT_EQ(second.resumed_from, 4);
  EXPECT_TRUE(second.finished);
  EXPECT_EQ(second.steps, 8);

  const auto a = RunDir::existing(dir / "straight").read_metrics();
  const auto b = split.read_metrics();
  ASSERT_EQ(a.size(), b.size()) << "8 step rows and validations at steps 3, 6 and 8";
  ASSERT_EQ(a.size(), 8u + 3u);
  for (std::size_t i = 0; i < a.size(); ++i) {
    expect_same_values(a[i], b[i], "row " + std::to_string(i));
  }
  EXPECT_DOUBLE_EQ(straight.best_validation_dice, second.best_validation_dice);
  EXPECT_EQ(straight.best_step, second.best_step);
  EXPECT_DOUBLE_EQ(straight.final_train_loss, second.final_train_loss);
  const auto summary_a = RunDir::existing(dir / "straight").read_summary();
  const auto summary_b = split.read_summary();
  EXPECT_EQ(summary_a["memory_bank/classes"], summary_b["memory_bank/classes"]);
  EXPECT_GT(summary_b["memory_bank/classes"].get<int64_t>(), 0);
  for (const auto& entry : fs::directory_iterator(split.checkpoints_dir())) {
    EXPECT_EQ(entry.path().extension(), ".pt") << "no temporary file left: " << entry.path();
  }

  // Nothing left to do: said so, and the run folder is untouched.
  const std::string metrics_before = read_file(split.metrics_path());
  const TrainResult again =
      train_iris(tiny_config(dir.path(), "split"), {split.path().string(), 0});
  EXPECT_TRUE(again.already_finished);
  EXPECT_EQ(again.steps, 8);
  EXPECT_EQ(read_file(split.metrics_path()), metrics_before);
}

// Runs `make(root, name)` straight through and stopped after step 4 then resumed; both must log
// the same values and end with the same best and final numbers.
void expect_exact_resume(
    const std::function<IrisTrainConfig(const fs::path&, const std::string&)>& make) {
  test::TempDir dir;
  const TrainResult straight = train_iris(make(dir.path(), "straight"));
  ASSERT_TRUE(straight.finished);
  const TrainResult first = train_iris(make(dir.path(), "split"), {"", 4});
  EXPECT_FALSE(first.finished);
  const RunDir split = RunDir::existing(dir / "split");
  const TrainResult second = train_iris(make(dir.path(), "split"), {split.path().string(), 0});
  EXPECT_EQ(second.resumed_from, 4);
  EXPECT_TRUE(second.finished);
  const auto a = RunDir::existing(dir / "straight").read_metrics();
  const auto b = split.read_metrics();
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), 8u + 3u) << "8 step rows and validations at steps 3, 6 and 8";
  for (std::size_t i = 0; i < a.size(); ++i) {
    expect_same_values(a[i], b[i], "row " + std::to_string(i));
  }
  EXPECT_DOUBLE_EQ(straight.best_validation_dice, second.best_validation_dice);
  EXPECT_EQ(straight.best_step, second.best_step);
  EXPECT_DOUBLE_EQ(straight.final_train_loss, second.final_train_loss);
  EXPECT_EQ(RunDir::existing(dir / "straight").read_summary()["memory_bank/classes"],
            split.read_summary()["memory_bank/classes"]);
}

TEST(Resume, LambRunResumesExactly) {
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  expect_exact_resume([](const fs::path& root, const std::string& name) {
    auto config = tiny_config(root, name);
    config.optim.name = "lamb";
    config.optim.eps = 1e-6;
    config.optim.schedule = "exponential";
    config.optim.final_lr_ratio = 0.5;
    return config;
  });
}

// 3D patch mode on synthetic volumes (no atlas needed), with Lamb and patch augmentation.
TEST(Resume, PatchRunOnSyntheticVolumesResumesExactly) {
  expect_exact_resume([](const fs::path& root, const std::string& name) {
    return load_config<IrisTrainConfig>(
        {std::string(IRIS_SOURCE_DIR) + "/configs/iris/patch_3d_tiny.yaml",
         {"run.root=" + root.string(), "run.name=" + name, "run.threads=1",
          "data.volume_size=24", "data.volumes=3", "data.patch_size=[8,16,16]",
          "optim.iterations=8", "optim.warmup=2", "optim.batch=2", "validation.every=3",
          "validation.episodes=2", "checkpoint_every=0"}});
  });
}

TEST(Resume, RefusesADifferentConfigAndAFolderWithoutARun) {
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  auto config = tiny_config(dir.path(), "run");
  config.optim.iterations = 2;
  train_iris(config, {"", 1});
  auto changed = config;
  changed.optim.lr = 1e-2;
  try {
    train_iris(changed, {(dir / "run").string(), 0});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
  }
  // Device and threads may change.
  changed = config;
  changed.run.device = "cpu";
  EXPECT_TRUE(train_iris(changed, {(dir / "run").string(), 0}).finished);
  EXPECT_THROW(train_iris(config, {(dir / "nothing").string(), 0}), InputError);
  fs::remove(dir / "run" / "checkpoints" / "last.pt");
  EXPECT_THROW(train_iris(config, {(dir / "run").string(), 0}), InputError);
}

#endif

}  // namespace
}  // namespace iris
