// Data-parallel SAM2 fine-tuning (label `dist`): `iris train --nproc 2` with a SAM2 config ends
// with the weights of one process with the same global batch (train.grad_accum clips per step).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>

#include "core/build_info.h"
#include "core/run_dir.h"
#include "dist/process_group.h"
#include "io/checkpoint.h"
#include "sam2_train_util.h"
#include "state_dict_util.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

TEST(DistSam2, TwoProcessesEndWithTheWeightsOfOneProcessWithTheSameGlobalBatch) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  test::write_tiny_train_and_val_videos(dir.path());

  // 8 frames = 4 clips of 2; a global batch of 2 clips gives 2 optimiser steps. Point prompts
  // draw random clicks and the memory attention has dropout: both must not depend on the split.
  auto command = [&](const std::string& name) {
    return test::iris_binary() + " train '" + IRIS_SOURCE_DIR +
           "/configs/sam2/finetune_video.yaml' --threads 1 --set run.root=" +
           (dir / "runs").string() + " --set run.name=" + name +
           " --set model.config=" + (test::sam2_fixture() / "config.yaml").string() +
           " --set model.checkpoint=" + (test::sam2_fixture() / "checkpoint.pt").string() +
           " --set data.train=" + (dir / "train").string() +
           " --set data.val=" + (dir / "val").string() +
           " --set recipe=md+pe --set model.prompt_type=point --set data.clip_length=2"
           " --set data.clip_stride=2 --set train.max_epochs=1 --set train.grad_accum=2"
           " --set train.warmup=0 --set train.lr=1e-3";
  };
  auto t0 = Clock::now();
  const auto one = test::run_command(command("one"));
  const double one_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(one.exit_code, 0) << one.output;
  t0 = Clock::now();
  const auto two = test::run_command(command("two") + " --nproc 2");
  const double two_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(two.exit_code, 0) << two.output;
  std::cout << "[measure] wall time of SAM2 `iris train` (2 steps, global batch 2): 1 process "
            << one_s << " s, 2 processes " << two_s << " s\n";
  EXPECT_NE(two.output.find("run folder: "), std::string::npos) << "rank 0 reports" << two.output;

  test::expect_same_trained_weights(test::sam2_fixture() / "checkpoint.pt", dir / "runs/one",
                                    dir / "runs/two", "1 vs 2 processes after 2 steps");

  // The logged train losses are the global ones; rank 0 alone wrote one run folder.
  const auto rows_one = RunDir::existing(dir / "runs/one").read_metrics();
  const auto rows_two = RunDir::existing(dir / "runs/two").read_metrics();
  ASSERT_EQ(rows_one.size(), rows_two.size());
  int64_t train_rows = 0;
  for (std::size_t i = 0; i < rows_one.size(); ++i) {
    for (const char* key : {"train/loss", "eval/Dice"}) {
      if (!rows_one[i].contains(key) || rows_one[i][key].is_null()) continue;
      ASSERT_TRUE(rows_two[i].contains(key)) << key;
      EXPECT_NEAR(rows_one[i][key].get<double>(), rows_two[i][key].get<double>(), 1e-5)
          << key << " row " << i;
    }
    train_rows += rows_one[i].contains("train/loss");
  }
  EXPECT_EQ(train_rows, 2);
  std::set<std::string> folders;
  for (const auto& e : fs::directory_iterator(dir / "runs")) {
    folders.insert(e.path().filename().string());
  }
  EXPECT_EQ(folders, (std::set<std::string>{"one", "two"}));
  EXPECT_EQ(RunDir::existing(dir / "runs/two").read_summary()["steps"], 2);

  // The finished SAM2 run resumes to nothing; an IRIS config cannot resume it.
  const auto again = test::run_command(test::iris_binary() + " train --threads 1 --resume " +
                                       (dir / "runs/two").string());
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("nothing to resume"), std::string::npos) << again.output;
  const auto wrong = test::run_command(test::iris_binary() + " train '" + IRIS_SOURCE_DIR +
                                       "/configs/iris/atlas_2d_tiny.yaml' --resume " +
                                       (dir / "runs/two").string());
  EXPECT_EQ(wrong.exit_code, 3) << wrong.output;
  EXPECT_NE(wrong.output.find("is an IRIS config but"), std::string::npos) << wrong.output;
}

TEST(DistSam2, AGlobalBatchSmallerThanTheRanksIsAConfigError) {
  if (!dist::dist_available()) GTEST_SKIP() << "built without c10d (IRIS_WITH_DIST)";
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  const auto r = test::run_command(
      test::iris_binary() + " train '" + IRIS_SOURCE_DIR +
      "/configs/sam2/finetune_video.yaml' --threads 1 --dist-timeout 20 --set run.root=" +
      (dir / "runs").string() + " --set model.config=" + (test::sam2_fixture() / "config.yaml").string() +
      " --set model.checkpoint=" + (test::sam2_fixture() / "checkpoint.pt").string() +
      " --set train.grad_accum=1 --nproc 2");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("train.grad_accum 1 is the global batch"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace iris
