// `iris bench train` with tiny settings: the table and a JSON file with one row per measured
// phase (md without cache, md with the feature cache on epoch 1 and epochs 2+, ie+md).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/build_info.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

TEST(BenchTrain, TinyRunWritesOneJsonRowPerPhase) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV (synthetic videos)";
  const fs::path micro =
      fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2" / "micro_seed0";
  if (!fs::exists(micro)) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  const auto json_path = dir / "bench.json";
  const auto r = test::run_command(
      test::iris_binary() + " --threads 1 bench train --config '" +
      (micro / "config.yaml").string() + "' --checkpoint '" + (micro / "checkpoint.pt").string() +
      "' --image-size 0 --frames 4 --clip-length 2 --epochs 2 --json '" + json_path.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("epoch:md+cache@2+"), std::string::npos) << r.output;

  std::ifstream in(json_path);
  const auto rows = nlohmann::json::parse(in);
  ASSERT_TRUE(rows.is_array());
  std::set<std::string> phases;
  for (const auto& row : rows) {
    for (const char* field : {"model", "size", "image_size", "device", "threads", "precision",
                              "phase", "repeats", "median_ms", "peak_rss_mb"}) {
      EXPECT_TRUE(row.contains(field)) << field;
    }
    EXPECT_EQ(row["image_size"], 256);  // the config's
    EXPECT_EQ(row["threads"], 1);
    EXPECT_GT(row["median_ms"].get<double>(), 0.0);
    phases.insert(row["phase"].get<std::string>());
  }
  EXPECT_EQ(phases, (std::set<std::string>{"epoch:md", "epoch:md+cache@1", "epoch:md+cache@2+",
                                           "epoch:ie+md"}));
}

}  // namespace
}  // namespace iris
