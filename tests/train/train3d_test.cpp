// `iris train` in 3D patch mode: synthetic volumes, held-out validation volumes, the same run
// folder and metrics fields as 2D, and the config checks that name the offending key.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "core/build_info.h"
#include "core/error.h"
#include "core/run_dir.h"
#if IRIS_HAVE_NIFTI
#include "train/iris_trainer.h"
#endif
#include "test_util.h"

namespace iris {
namespace {

#if IRIS_HAVE_NIFTI

IrisTrainConfig patch_config(const fs::path& root, std::vector<std::string> overrides = {}) {
  std::vector<std::string> all{
      "run.root=" + root.string(), "run.name=patch", "run.threads=1",
      "data.volume_size=24",       "data.volumes=3", "data.patch_size=[8,16,16]",
      "optim.iterations=3",        "optim.batch=2",  "validation.every=2",
      "validation.episodes=2"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return load_config<IrisTrainConfig>(
      {std::string(IRIS_SOURCE_DIR) + "/configs/iris/patch_3d_tiny.yaml", all});
}

std::set<std::string> keys(const nlohmann::json& row) {
  std::set<std::string> out;
  for (const auto& [key, value] : row.items()) out.insert(key);
  return out;
}

TEST(IrisTrainer3D, TrainsOnPatchesOfSyntheticVolumes) {
  test::TempDir dir;
  const IrisTrainConfig config = patch_config(dir.path());
  ASSERT_EQ(config.model.options.spatial_dims, 3);
  const TrainResult r = train_iris(config);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.steps, 3);
  EXPECT_TRUE(std::isfinite(r.final_train_loss));
  EXPECT_GT(r.final_train_loss, 0);
  const RunDir run = RunDir::existing(dir / "patch");
  const auto rows = run.read_metrics();
  ASSERT_EQ(rows.size(), 3u + 2u) << "3 step rows and validations at steps 2 and 3";
  // The fields of the 2D trainer's rows.
  const std::set<std::string> step_keys{"step",         "train/loss",    "train/dice",
                                        "lr",           "time/data_ms",  "time/compute_ms",
                                        "time/sync_ms", "samples_per_s", "memory/peak_rss_mb"};
  const std::set<std::string> val_keys{"step", "val/loss", "val/dice", "val/dice_per_class"};
  EXPECT_EQ(keys(rows[0]), step_keys);
  EXPECT_EQ(keys(rows[2]), val_keys);
  EXPECT_EQ(rows[2]["step"], 2);
  for (const auto& [name, dice] : rows[2]["val/dice_per_class"].items()) {
    EXPECT_EQ(name.rfind("organ_", 0), 0u) << name;
    EXPECT_GE(dice.get<double>(), 0.0);
    EXPECT_LE(dice.get<double>(), 1.0);
  }
  EXPECT_TRUE(fs::exists(run.checkpoints_dir() / "best.pt"));
  EXPECT_TRUE(fs::exists(run.checkpoints_dir() / "last.pt"));
  const auto summary = run.read_summary();
  EXPECT_EQ(summary["steps"], 3);
  EXPECT_GT(summary["memory_bank/classes"].get<int64_t>(), 0);
  // The resolved config reloads as is, and its weights load into a 3D model.
  const auto again = load_config<IrisTrainConfig>({run.config_path().string(), {}});
  EXPECT_EQ(again.data.source, "synthetic");
  EXPECT_EQ(again.data.patch_size, (std::vector<int64_t>{8, 16, 16}));
  EXPECT_EQ(again.optim.name, "lamb");
  const auto model =
      load_iris_checkpoint((run.checkpoints_dir() / "best.pt").string(), again.model.options);
  EXPECT_EQ(model->options.spatial_dims, 3);
}

TEST(IrisTrainer3D, SameSeedSameRunAndTheVolumesDependOnVolumeSeedOnly) {
  test::TempDir dir;
  auto a = patch_config(dir.path(), {"run.name=a", "optim.iterations=2", "validation.every=0"});
  auto b = patch_config(dir.path(), {"run.name=b", "optim.iterations=2", "validation.every=0"});
  auto c = patch_config(
      dir.path(), {"run.name=c", "optim.iterations=2", "validation.every=0", "data.volume_seed=5"});
  const TrainResult ra = train_iris(a), rb = train_iris(b), rc = train_iris(c);
  EXPECT_EQ(ra.final_train_loss, rb.final_train_loss);
  EXPECT_NE(ra.final_train_loss, rc.final_train_loss);
}

TEST(IrisTrainer3D, ConfigErrorsNameTheKey) {
  test::TempDir dir;
  auto expect_error = [&](const IrisTrainConfig& config, const std::string& key) {
    try {
      check_iris_train_config(config);
      FAIL() << "expected ConfigError naming " << key;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
    EXPECT_THROW(train_iris(config), ConfigError);
  };
  expect_error(patch_config(dir.path(), {"data.source=atlas"}), "data.source");
  expect_error(patch_config(dir.path(), {"data.patch_size=[8,12,16]"}), "data.patch_size");
  expect_error(patch_config(dir.path(), {"data.patch_size=[8,16]"}), "data.patch_size");
  expect_error(patch_config(dir.path(), {"data.validation_volumes=1"}), "data.validation_volumes");
  expect_error(patch_config(dir.path(), {"model.spatial_dims=2"}), "data.source");
  expect_error(patch_config(dir.path(), {"model.spatial_dims=4"}), "model.spatial_dims");
  EXPECT_NO_THROW(check_iris_train_config(patch_config(dir.path())));
  EXPECT_NO_THROW(check_iris_train_config(IrisTrainConfig{})) << "the demo's defaults";
  EXPECT_FALSE(fs::exists(dir / "patch")) << "refused before creating a run folder";
}

#endif

}  // namespace
}  // namespace iris
