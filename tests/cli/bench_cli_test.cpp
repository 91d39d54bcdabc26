// `iris bench iris` and `iris bench data` in CI-sized settings: they run and write JSON rows with
// the documented fields and plausible values.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/build_info.h"
#include "test_util.h"

namespace iris {
namespace {

using test::iris_binary;
using test::run_command;

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);  // throws on invalid JSON
}

// The fields every `iris bench` row carries.
void expect_bench_fields(const nlohmann::json& row) {
  for (const char* key : {"model", "size", "device", "threads", "precision", "phase", "median_ms",
                          "peak_rss_mb", "repeats", "image_size"}) {
    EXPECT_TRUE(row.contains(key)) << key << " missing in " << row.dump();
  }
  EXPECT_GT(row.value("median_ms", 0.0), 0.0) << row.dump();
  EXPECT_GT(row.value("peak_rss_mb", 0.0), 0.0) << row.dump();
  EXPECT_GE(row.value("threads", 0), 1) << row.dump();
}

TEST(BenchCli, IrisTinyWritesJsonForInferenceAndTraining) {
  test::TempDir dir;
  const auto json = dir / "iris.json";
  const auto r =
      run_command("OMP_NUM_THREADS=1 " + iris_binary() +
                  " --threads 1 bench iris --preset tiny --size 32 --depth 16 --repeats 1 "
                  "--iterations 2 --json '" +
                  json.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train_step"), std::string::npos) << r.output;
  const auto rows = read_json(json);
  ASSERT_TRUE(rows.is_array());
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& row : rows) {
    expect_bench_fields(row);
    EXPECT_EQ(row["model"], "iris");
    EXPECT_EQ(row["device"], "cpu");
    EXPECT_EQ(row["precision"], "fp32");
    seen.insert({row["size"].get<std::string>(), row["phase"].get<std::string>()});
  }
  for (const char* size : {"tiny-2d", "tiny-3d"}) {
    for (const char* phase :
         {"inference", "encode_task", "segment_query", "train_step", "train_iterations"}) {
      EXPECT_EQ(seen.count({size, phase}), 1u) << size << " " << phase;
    }
  }
  for (const auto& row : rows) {
    if (row["phase"] == "train_iterations") {
      EXPECT_EQ(row["iterations"], 2);
      EXPECT_NEAR(row["total_s"].get<double>() * 1000.0, row["median_ms"].get<double>(), 1e-6);
    }
    if (row["phase"] == "inference") {
      EXPECT_EQ(row["queries"], 2);
    }
  }
}

TEST(BenchCli, IrisRejectsABadPresetAndSize) {
  auto r = run_command(iris_binary() + " bench iris --preset huge");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_command(iris_binary() + " bench iris --size 20");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("multiples of 16"), std::string::npos) << r.output;
}

TEST(BenchCli, DataWritesFramesAndVolumesPerSecond) {
  test::TempDir dir;
  const auto json = dir / "data.json";
  const auto r = run_command(
      "OMP_NUM_THREADS=1 " + iris_binary() +
      " --threads 1 bench data --loader-threads 1 --loader-threads 2 --repeats 1 --videos 1 "
      "--frames 4 --width 96 --height 64 --clip-length 2 --out-size 64 --cases 3 "
      "--volume-size 24 --patch 16 --classes 2 --episodes 4 --json '" +
      json.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto rows = read_json(json);
  ASSERT_TRUE(rows.is_array());
  std::multiset<std::string> phases;
  for (const auto& row : rows) {
    expect_bench_fields(row);
    EXPECT_EQ(row["model"], "loader");
    phases.insert(row["phase"].get<std::string>());
    if (row["phase"] == "surgical_clips") {
      EXPECT_EQ(row["per_epoch"], 4);  // 2 clips of 2 frames
      EXPECT_GT(row["frames_per_s"].get<double>(), 0.0);
    } else {
      EXPECT_EQ(row["per_epoch"], 8);  // 4 episodes, reference + query
      EXPECT_GT(row["volumes_per_s"].get<double>(), 0.0);
    }
  }
  if (build::kHaveOpenCV) {
    EXPECT_EQ(phases.count("surgical_clips"), 2u);
  }
  if (build::kHaveNifti) {
    EXPECT_EQ(phases.count("patch_episodes"), 2u);
  }
}

}  // namespace
}  // namespace iris
