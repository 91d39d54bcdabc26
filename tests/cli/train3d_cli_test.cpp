// `iris train configs/iris/patch_3d_tiny.yaml` end to end through the binary: a few steps of 3D
// patch training, then --resume of the finished run.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_rows(const fs::path& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

TEST(TrainCli, PatchPresetTrainsAFewStepsIn3D) {
  if (!build::kHaveNifti) GTEST_SKIP() << "training needs NIfTI support";
  test::TempDir dir;
  const std::string preset =
      (fs::path(IRIS_SOURCE_DIR) / "configs/iris/patch_3d_tiny.yaml").string();
  const auto r = test::run_command(
      test::iris_binary() + " train '" + preset + "' --set optim.iterations=4" +
      " --set validation.every=2 --set validation.episodes=2 --set data.volume_size=24" +
      " --set data.volumes=3 --set 'data.patch_size=[8,16,16]' --set run.name=p3d" +
      " --set run.root='" + dir.path().string() + "' --threads 1 -q");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("trained 4 steps"), std::string::npos) << r.output;
  const fs::path run = dir / "p3d";
  const auto rows = read_rows(run / "metrics.jsonl");
  ASSERT_EQ(rows.size(), 4u + 2u) << "4 step rows and validations at steps 2 and 4";
  int64_t steps = 0, validations = 0;
  for (const auto& row : rows) {
    if (row.contains("train/loss")) {
      ++steps;
      EXPECT_EQ(row["step"], steps);
      EXPECT_GT(row["train/loss"].get<double>(), 0.0);
      EXPECT_GT(row["lr"].get<double>(), 0.0);
    } else {
      ++validations;
      EXPECT_TRUE(row.contains("val/dice")) << row.dump();
      EXPECT_TRUE(row.contains("val/dice_per_class")) << row.dump();
    }
  }
  EXPECT_EQ(steps, 4);
  EXPECT_EQ(validations, 2);
  for (const char* file : {"config.yaml", "summary.json", "checkpoints/best.pt",
                           "checkpoints/last.pt", "report/training_report.md"}) {
    EXPECT_TRUE(fs::exists(run / file)) << file;
  }
  // The stored config names 3D patches of synthetic volumes and Lamb.
  std::ifstream config_in(run / "config.yaml");
  const std::string config((std::istreambuf_iterator<char>(config_in)), {});
  EXPECT_NE(config.find("spatial_dims: 3"), std::string::npos);
  EXPECT_NE(config.find("source: \"synthetic\""), std::string::npos);
  EXPECT_NE(config.find("name: \"lamb\""), std::string::npos);

  const auto again = test::run_command(test::iris_binary() + " train --resume '" + run.string() +
                                       "' --threads 1 -q --no-report");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("nothing to resume"), std::string::npos) << again.output;
}

TEST(TrainCli, ThreeDimensionalAtlasTrainingIsABadConfigNamingTheSource) {
  if (!build::kHaveNifti) GTEST_SKIP() << "training needs NIfTI support";
  test::TempDir dir;
  const auto r = test::run_command(
      test::iris_binary() + " train '" +
      (fs::path(IRIS_SOURCE_DIR) / "configs/iris/patch_3d_tiny.yaml").string() +
      "' --set data.source=atlas --set run.root='" + dir.path().string() + "' -q");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("data.source"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace iris
