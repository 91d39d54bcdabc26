#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/atomic_file.h"
#include "reference_data.h"
#include "test_util.h"

namespace iris {
namespace {

using test::iris_binary;
using test::run_command;

TEST(ReportCli, InsightsWritesTheThreeFiles) {
  IRIS_REQUIRE_REFERENCE(reference);
  test::TempDir dir;
  write_file_atomic(dir / "export.csv",
                    test::export_csv(test::reference_runs(test::parse_markdown_tables(reference))));
  const auto out = dir / "report";
  const auto r = run_command(iris_binary() + " report insights --csv '" +
                             (dir / "export.csv").string() + "' --out '" + out.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"insights.md", "insights.html", "insights.json"}) {
    EXPECT_TRUE(std::filesystem::exists(out / f)) << f;
  }
  const auto json = nlohmann::json::parse(read_file(out / "insights.json"));
  EXPECT_EQ(json.at("tables").at("trained_vs_baseline").size(), 63u);
  EXPECT_EQ(json.at("counts").at("baselines"), 9);
}

TEST(ReportCli, BadCsvExitsWithCode3AndMessage) {
  test::TempDir dir;
  write_file_atomic(dir / "bad.csv", "\"Name\",\"eval/Dice\"\n\"a\",\"0.5\"\n");
  const auto r =
      run_command(iris_binary() + " report insights --csv '" + (dir / "bad.csv").string() +
                  "' --out '" + (dir / "out").string() + "'");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("bad.csv: missing required column"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "insights.md"));

  const auto missing =
      run_command(iris_binary() + " report insights --csv '" + (dir / "nope.csv").string() +
                  "' --out '" + (dir / "out").string() + "'");
  EXPECT_EQ(missing.exit_code, 3) << missing.output;
  EXPECT_NE(missing.output.find("nope.csv"), std::string::npos) << missing.output;
}

TEST(ReportCli, ColumnOverrideAndUsageErrors) {
  test::TempDir dir;
  write_file_atomic(dir / "e.csv",
                    "run,d,m,i,p,t,ds,e\n"
                    "ds_box_mem__0,0.5,2,0.4,box,\"[\"\"memory_encoder\"\"]\",ds,0\n"
                    "ds_box_md__1,0.6,1,0.5,box,\"[\"\"mask_decoder\"\"]\",ds,30\n");
  const std::string base = iris_binary() + " report insights --csv '" + (dir / "e.csv").string() +
                           "' --out '" + (dir / "out").string() + "' --no-plots";
  const auto ok =
      run_command(base +
                  " --column dice=d --column mae=m --column miou=i --column prompt_type=p"
                  " --column trainable_modules=t --column dataset=ds --column max_epochs=e");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "insights.json"));
  EXPECT_EQ(run_command(base + " --column volume=x").exit_code, 2);
  EXPECT_EQ(run_command(iris_binary() + " report insights --out x").exit_code, 2);
  const auto runs = run_command(iris_binary() + " report insights --runs '" +
                                (dir / "no-runs").string() + "' --out y");
  EXPECT_EQ(runs.exit_code, 3) << runs.output;
  EXPECT_NE(runs.output.find("no-runs: no such runs folder"), std::string::npos) << runs.output;
}

}  // namespace
}  // namespace iris
