#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "test_util.h"

namespace iris {
namespace {

TEST(RunDir, CreatesTheDocumentedLayout) {
  test::TempDir dir;
  const auto run = RunDir::open(dir.path(), "exp1");
  EXPECT_TRUE(fs::is_directory(dir / "exp1"));
  EXPECT_TRUE(fs::is_directory(run.checkpoints_dir()));
  EXPECT_TRUE(fs::is_directory(run.report_dir()));
  EXPECT_EQ(run.config_path(), dir / "exp1/config.yaml");
  EXPECT_EQ(run.metrics_path(), dir / "exp1/metrics.jsonl");
  EXPECT_EQ(run.summary_path(), dir / "exp1/summary.json");
  EXPECT_EQ(run.log_path(), dir / "exp1/log.txt");
  EXPECT_EQ(run.name(), "exp1");
}

TEST(RunDir, RefusesToOverwriteAndResumesOnlyExistingRuns) {
  test::TempDir dir;
  const auto run = RunDir::open(dir.path(), "exp1");
  run.write_config("run: {name: exp1}\n");
  EXPECT_THROW(RunDir::open(dir.path(), "exp1"), InputError);
  EXPECT_NO_THROW(RunDir::open(dir.path(), "exp1", RunDir::Mode::kResume));
  EXPECT_NO_THROW(RunDir::open(dir.path(), "exp1", RunDir::Mode::kCreateOrResume));
  EXPECT_THROW(RunDir::open(dir.path(), "other", RunDir::Mode::kResume), InputError);
  EXPECT_THROW(RunDir::open(dir.path(), "a/b"), InputError);
  EXPECT_THROW(RunDir::open(dir.path(), ""), InputError);
}

TEST(RunDir, MetricsAndSummaryRoundTrip) {
  test::TempDir dir;
  const auto run = RunDir::open(dir.path(), "exp1");
  for (int step = 1; step <= 3; ++step) {
    run.append_metrics({{"step", step}, {"train/loss", 1.0 / step}});
  }
  run.write_summary({{"best/dice", 0.75}, {"steps", 3}});
  const auto rows = run.read_metrics();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2]["step"], 3);
  EXPECT_DOUBLE_EQ(rows[1]["train/loss"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(run.read_summary()["best/dice"].get<double>(), 0.75);
}

TEST(RunDir, ResolvedConfigIsWrittenAndReloadsAsIs) {
  test::TempDir dir;
  auto options = load_config<RunOptions>({"", {"name=exp2", "seed=5", "threads=2"}});
  const auto run = RunDir::open(dir.path(), options.name);
  run.write_config(dump_config(options));
  const auto again = load_config<RunOptions>({run.config_path().string(), {}});
  EXPECT_EQ(again.name, "exp2");
  EXPECT_EQ(again.seed, 5);
  EXPECT_EQ(again.threads, 2);
  EXPECT_EQ(dump_config(again), read_file(run.config_path()));
}

TEST(RunDir, CorruptMetricsLineNamesFileAndLine) {
  test::TempDir dir;
  const auto run = RunDir::open(dir.path(), "exp1");
  run.append_metrics({{"step", 1}});
  append_line(run.metrics_path(), "{not json");
  try {
    run.read_metrics();
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:2"), std::string::npos) << e.what();
  }
}

TEST(RunDir, GeneratedNamesCarryPrefixAndTime) {
  const auto name = generated_run_name("iris");
  EXPECT_EQ(name.rfind("iris-", 0), 0u);
  EXPECT_EQ(name.size(), std::string("iris-20261123-120000").size());
}

}  // namespace
}  // namespace iris
