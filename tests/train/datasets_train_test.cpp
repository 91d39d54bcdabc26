// `iris train` on users' datasets (data.source: datasets): an MSD tree in 3D, a Kvasir-style
// image folder in 2D, per-dataset validation, exact resume, and bad datasets refused by name.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "dataset_util.h"
#include "test_util.h"
#if IRIS_HAVE_NIFTI
#include "data/synthetic_volume.h"
#include "train/iris_trainer.h"
#endif

namespace iris {
namespace {

#if IRIS_HAVE_NIFTI

bool is_measurement(const std::string& key) {
  return key.rfind("time/", 0) == 0 || key.rfind("memory/", 0) == 0 || key == "samples_per_s";
}

// Rows of two runs equal in everything but timings and memory.
void expect_same_rows(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (const auto& [key, value] : a[i].items()) {
      if (is_measurement(key)) continue;
      ASSERT_TRUE(b[i].contains(key)) << "row " << i << ": " << key;
      if (value.is_number_float()) {
        EXPECT_NEAR(value.get<double>(), b[i][key].get<double>(),
                    1e-6 * std::max(1.0, std::abs(value.get<double>())))
            << "row " << i << ": " << key;
      } else {
        EXPECT_EQ(value, b[i][key]) << "row " << i << ": " << key;
      }
    }
  }
}

// Trains `make(name)` straight through and stopped after step 4 then resumed: the same rows, the
// same best and final numbers.
void expect_exact_resume(const fs::path& root,
                         const std::function<IrisTrainConfig(const std::string&)>& make) {
  const TrainResult straight = train_iris(make("straight"));
  ASSERT_TRUE(straight.finished);
  EXPECT_FALSE(train_iris(make("split"), {"", 4}).finished);
  const TrainResult second = train_iris(make("split"), {(root / "split").string(), 0});
  EXPECT_EQ(second.resumed_from, 4);
  EXPECT_TRUE(second.finished);
  expect_same_rows(RunDir::existing(root / "straight").read_metrics(),
                   RunDir::existing(root / "split").read_metrics());
  EXPECT_DOUBLE_EQ(straight.final_train_loss, second.final_train_loss);
  EXPECT_DOUBLE_EQ(straight.best_validation_dice, second.best_validation_dice);
  // The same weights.
  const auto options = make("straight").model.options;
  auto a = load_iris_checkpoint((root / "straight/checkpoints/last.pt").string(), options);
  auto b = load_iris_checkpoint((root / "split/checkpoints/last.pt").string(), options);
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  double worst = 0;
  for (const auto& item : pa) {
    worst = std::max(worst, (item.value() - pb[item.key()]).abs().max().item<double>());
  }
  std::cout << "[measure] resumed vs uninterrupted, max weight difference: " << worst << "\n";
  EXPECT_EQ(worst, 0.0);
}

std::vector<std::string> tiny_model(const fs::path& root, const std::string& name, int dims) {
  return {"run.root=" + root.string(),
          "run.name=" + name,
          "run.threads=1",
          "model.spatial_dims=" + std::to_string(dims),
          "model.base_channels=4",
          "model.stages=2",
          "model.query_tokens=2",
          "model.heads=2",
          "model.prior_features=0",
          "data.source=datasets",
          "optim.iterations=8",
          "optim.warmup=2",
          "optim.batch=2",
          "validation.every=3",
          "validation.episodes=4",
          "checkpoint_every=0"};
}

TEST(DatasetTraining, MsdTreeTrainsValidatesPerDatasetAndResumesExactly) {
  test::TempDir dir;
  SyntheticVolumeOptions synth;
  synth.cases = 6;
  synth.size = 24;
  synth.classes = 3;
  write_synthetic_volumes(synth, dir / "Task01_Organs");
  synth.seed = 3;
  synth.cases = 5;
  write_synthetic_volumes(synth, dir / "Task02_More");
  auto make = [&](const std::string& name) {
    auto overrides = tiny_model(dir.path(), name, 3);
    overrides.push_back("data.patch_size=[8,16,16]");
    overrides.push_back("data.min_area=5");
    overrides.push_back("data.preprocess.spacing=[2.0,2.0,2.0]");
    overrides.push_back("data.datasets=[{path: " + (dir / "Task01_Organs").string() +
                        "}, {path: " + (dir / "Task02_More").string() +
                        ", name: more, weight: 0.5, exclude_classes: [3]}]");
    return load_config<IrisTrainConfig>({"", overrides});
  };
  expect_exact_resume(dir.path(), make);
  const RunDir run = RunDir::existing(dir / "straight");
  // The resolved names and modalities are recorded.
  const std::string config = read_file(run.path() / "config.yaml");
  EXPECT_NE(config.find("Task01_Organs"), std::string::npos);
  EXPECT_NE(config.find("synthetic"), std::string::npos) << "modality from dataset.json";
  const auto rows = run.read_metrics();
  int validations = 0;
  for (const auto& row : rows) {
    if (!row.contains("val/dice")) continue;
    ++validations;
    ASSERT_TRUE(row.contains("val/dice_per_dataset")) << row.dump();
    const auto& per_dataset = row["val/dice_per_dataset"];
    EXPECT_TRUE(per_dataset.contains("Task01_Organs")) << per_dataset.dump();
    EXPECT_TRUE(per_dataset.contains("more")) << per_dataset.dump();
    for (const auto& [name, dice] : row["val/dice_per_class"].items()) {
      EXPECT_TRUE(name.rfind("Task01_Organs/organ_", 0) == 0 || name.rfind("more/organ_", 0) == 0)
          << name;
      EXPECT_NE(name, "more/organ_3") << "held-out class validated as trained";
      EXPECT_GE(dice.get<double>(), 0);
      EXPECT_LE(dice.get<double>(), 1);
    }
  }
  EXPECT_EQ(validations, 3);
  // The memory bank is keyed by dataset: label 1 of the two datasets never blends.
  EXPECT_GE(run.read_summary()["memory_bank/classes"].get<int64_t>(), 3);
}

TEST(DatasetTraining, ImageFolderTrainsIn2DAndResumesExactly) {
  test::TempDir dir;
  test::write_kvasir_like(dir / "kvasir", 8);
  auto make = [&](const std::string& name) {
    auto overrides = tiny_model(dir.path(), name, 2);
    overrides.push_back("model.in_channels=3");
    overrides.push_back("data.slice_size=32");
    overrides.push_back("data.datasets=[{path: " + (dir / "kvasir").string() + "}]");
    return load_config<IrisTrainConfig>({"", overrides});
  };
  expect_exact_resume(dir.path(), make);
  const auto rows = RunDir::existing(dir / "straight").read_metrics();
  const auto& last = rows.back();
  ASSERT_TRUE(last.contains("val/dice_per_class"));
  EXPECT_TRUE(last["val/dice_per_class"].contains("kvasir/foreground")) << last.dump();
}

TEST(DatasetTraining, ADatasetWithNoUsableCaseExitsThreeNamingIt) {
  test::TempDir dir;
  fs::create_directories(dir / "empty/imagesTr");
  fs::create_directories(dir / "empty/labelsTr");
  write_file_atomic(dir / "empty/imagesTr/case_0000.nii.gz", "not a nifti file");
  write_file_atomic(dir / "empty/labelsTr/case.nii.gz", "");
  const std::string config = (dir / "config.yaml").string();
  write_file_atomic(config,
                    "model:\n  spatial_dims: 3\n  base_channels: 4\n  stages: 2\n"
                    "data:\n  source: datasets\n  datasets:\n    - path: " +
                        (dir / "empty").string() + "\noptim:\n  iterations: 2\n");
  const auto r = test::run_command(test::iris_binary() + " train " + config +
                                   " --set run.root=" + (dir / "runs").string());
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("dataset 'empty' has 0 usable case(s)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("case_0000.nii.gz"), std::string::npos) << r.output;
}

#endif

}  // namespace
}  // namespace iris
