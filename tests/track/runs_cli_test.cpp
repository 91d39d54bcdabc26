#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "test_util.h"
#include "track/csv.h"
#include "track_test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using test::iris_binary;
using test::run_command;

std::string runs_cmd(const std::string& args, const fs::path& root) {
  return iris_binary() + " runs " + args + " --runs '" + root.string() + "'";
}

// One study cell per prompt type: a baseline and two recipes each, plus a run without metrics.
void make_study(const fs::path& root) {
  int job = 0;
  for (const std::string prompt : {"point", "box"}) {
    const double base = prompt == "point" ? 0.5 : 0.7;
    test::make_study_run(root, "ds_" + prompt + "_md__" + std::to_string(job++), "ds", prompt,
                         "[mask_decoder]", 0, base, base - 0.1, 4.0);
    test::make_study_run(root, "ds_" + prompt + "_md__" + std::to_string(job++), "ds", prompt,
                         "[mask_decoder]", 30, base + 0.1, base, 3.0);
    test::make_study_run(root, "ds_" + prompt + "_mem+md__" + std::to_string(job++), "ds", prompt,
                         "[memory_encoder, memory_attention, mask_decoder]", 30, base + 0.05,
                         base - 0.05, 3.5);
  }
  const RunDir iris = RunDir::open(root, "iris-atlas");
  iris.write_config("data:\n  label_map: aal\noptim:\n  iterations: 300\n");
  iris.append_metrics({{"step", 300}, {"train/loss", 0.125}, {"lr", 1e-4}});
  iris.write_summary({{"best/val_dice", 0.5}, {"time/seconds", 12.5}});
}

TEST(RunsCli, ListShowsRunsAndFilters) {
  test::TempDir dir;
  make_study(dir / "runs");
  const auto all = run_command(runs_cmd("list", dir / "runs"));
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find("ds_point_mem+md__2"), std::string::npos) << all.output;
  EXPECT_NE(all.output.find("300 steps"), std::string::npos) << all.output;
  EXPECT_NE(all.output.find("0 (baseline)"), std::string::npos) << all.output;
  EXPECT_NE(all.output.find("7 of 7 runs"), std::string::npos) << all.output;
  if (build::kHaveSqlite) {
    EXPECT_TRUE(fs::exists(dir / "runs" / "runs.db"));
  }

  const auto box = run_command(runs_cmd("list --prompt box --recipe md --reindex", dir / "runs"));
  ASSERT_EQ(box.exit_code, 0) << box.output;
  EXPECT_NE(box.output.find("2 of 7 runs"), std::string::npos) << box.output;
  EXPECT_EQ(box.output.find("ds_point"), std::string::npos) << box.output;
  EXPECT_EQ(box.output.find("mem+md"), std::string::npos) << box.output;
}

TEST(RunsCli, ShowAndCompare) {
  test::TempDir dir;
  make_study(dir / "runs");
  const auto show = run_command(runs_cmd("show iris-atlas", dir / "runs"));
  ASSERT_EQ(show.exit_code, 0) << show.output;
  for (const char* text : {"optim.iterations", "300", "best/val_dice", "train/loss", "0.125",
                           "step 300", "finished"}) {
    EXPECT_NE(show.output.find(text), std::string::npos) << text << "\n" << show.output;
  }
  const auto cmp = run_command(runs_cmd("compare ds_box_md__4 ds_box_mem+md__5", dir / "runs"));
  ASSERT_EQ(cmp.exit_code, 0) << cmp.output;
  EXPECT_NE(cmp.output.find("eval/Dice"), std::string::npos) << cmp.output;
  EXPECT_NE(cmp.output.find("0.8000"), std::string::npos) << cmp.output;
  EXPECT_NE(cmp.output.find("0.7500"), std::string::npos) << cmp.output;
  EXPECT_NE(cmp.output.find("config module.model.trainable_modules"), std::string::npos)
      << cmp.output;
  EXPECT_EQ(cmp.output.find("config trainer.precision"), std::string::npos) << cmp.output;

  const auto unknown = run_command(runs_cmd("show ds_box_md__9", dir / "runs"));
  EXPECT_EQ(unknown.exit_code, 3) << unknown.output;
  EXPECT_NE(unknown.output.find("no run 'ds_box_md__9'; closest: ds_box_md__"), std::string::npos)
      << unknown.output;
}

TEST(RunsCli, ExportImportRoundTripAndInsightsFromRuns) {
  test::TempDir dir;
  make_study(dir / "runs");
  const auto exp =
      run_command(runs_cmd("export --out '" + (dir / "e.csv").string() + "'", dir / "runs"));
  ASSERT_EQ(exp.exit_code, 0) << exp.output;
  const std::string csv = read_file(dir / "e.csv");
  const auto table = track::parse_csv(csv, "e.csv");
  ASSERT_EQ(table.records.size(), 7u);
  EXPECT_EQ(std::vector<std::string>(table.header.begin(), table.header.begin() + 7),
            (std::vector<std::string>{"Name", "State", "Created", "Runtime", "eval/Dice",
                                      "eval/MAE", "eval/mIoU"}));
  // Every field quoted: each line starts and ends with a quote, fields are joined by ",".
  for (std::size_t start = 0; start < csv.size();) {
    const std::size_t end = csv.find('\n', start);
    const std::string line = csv.substr(start, end - start);
    EXPECT_EQ(line.front(), '"') << line;
    EXPECT_EQ(line.back(), '"') << line;
    start = end + 1;
  }

  const auto imp = run_command(runs_cmd("import '" + (dir / "e.csv").string() + "'", dir / "copy"));
  ASSERT_EQ(imp.exit_code, 0) << imp.output;
  EXPECT_NE(imp.output.find("imported 7 runs"), std::string::npos) << imp.output;
  const auto again =
      run_command(runs_cmd("import '" + (dir / "e.csv").string() + "'", dir / "copy"));
  EXPECT_NE(again.output.find("imported 0 runs"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("7 already imported"), std::string::npos) << again.output;
  const auto list = run_command(runs_cmd("list", dir / "copy"));
  EXPECT_NE(list.output.find("finished (imported)"), std::string::npos) << list.output;
  ASSERT_EQ(run_command(runs_cmd("export --out '" + (dir / "e2.csv").string() + "'", dir / "copy"))
                .exit_code,
            0);
  EXPECT_EQ(read_file(dir / "e2.csv"), csv);  // names, metrics, config and times survive

  // The insights report reads the same numbers from either run folder.
  for (const char* root : {"runs", "copy"}) {
    const fs::path out = dir / (std::string("report-") + root);
    const auto rep = run_command(iris_binary() + " report insights --no-plots --runs '" +
                                 (dir / root).string() + "' --out '" + out.string() + "'");
    ASSERT_EQ(rep.exit_code, 0) << rep.output;
    const auto json = nlohmann::json::parse(read_file(out / "insights.json"));
    EXPECT_EQ(json.at("tables").at("trained_vs_baseline").size(), 4u) << root;
    EXPECT_EQ(json.at("counts").at("baselines"), 2) << root;
  }
  auto report_json = [&](const char* root) {
    auto json =
        nlohmann::json::parse(read_file(dir / (std::string("report-") + root) / "insights.json"));
    json.erase("source");
    return json;
  };
  EXPECT_EQ(report_json("runs"), report_json("copy"));
}

TEST(RunsCli, ImportErrors) {
  test::TempDir dir;
  write_file_atomic(dir / "no-name.csv", "\"Run name\",\"eval/Dice\"\n\"a\",\"0.5\"\n");
  const auto missing =
      run_command(runs_cmd("import '" + (dir / "no-name.csv").string() + "'", dir / "runs"));
  EXPECT_EQ(missing.exit_code, 3) << missing.output;
  EXPECT_NE(missing.output.find("no-name.csv: missing required column 'Name'"), std::string::npos)
      << missing.output;
  EXPECT_NE(missing.output.find("--column name=NAME"), std::string::npos) << missing.output;
  const auto mapped = run_command(runs_cmd(
      "import '" + (dir / "no-name.csv").string() + "' --column 'name=Run name'", dir / "runs"));
  EXPECT_EQ(mapped.exit_code, 0) << mapped.output;
  write_file_atomic(dir / "bad.csv", "\"Name\",\"eval/Dice\"\n\"a\",\"high\"\n");
  const auto bad =
      run_command(runs_cmd("import '" + (dir / "bad.csv").string() + "'", dir / "runs"));
  EXPECT_EQ(bad.exit_code, 3) << bad.output;
  EXPECT_NE(bad.output.find("column 'eval/Dice' has 'high'"), std::string::npos) << bad.output;
  const auto usage =
      run_command(runs_cmd("import '" + (dir / "bad.csv").string() + "' --column x", dir / "runs"));
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
}

}  // namespace
}  // namespace iris
