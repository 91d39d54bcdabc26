// Acceptance tests of the insights report against the study's reference report.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "reference_data.h"
#include "report/insights_writer.h"
#include "report/plot.h"
#include "test_util.h"
#include "track/wandb_csv.h"

namespace iris::report {
namespace {

using test::CsvRun;
using test::MdTable;

// Reference heading -> table id in insights.json.
const std::vector<std::pair<std::string, std::string>> kReferenceTables = {
    {"Trained Models vs Baseline", "trained_vs_baseline"},
    {"Insight 1", "overall_impact"},
    {"Insight 2", "memory_contribution"},
    {"Insight 3", "image_encoder_contribution"},
    {"Insight 4", "prompt_type_effectiveness"},
    {"Insight 5", "best_configuration"},
    {"Insight 6", "best_recipe"}};

// Printed precision of a reference column: percentages have 2 decimals, metrics 4.
double tolerance(const std::string& column) {
  if (column == "run_count") return 0;
  const bool percent = column.find('%') != std::string::npos ||
                       column.find("improvement") != std::string::npos ||
                       column.find("Image Encoder") != std::string::npos;
  return (percent ? 1e-2 : 1e-4) + 1e-9;
}

std::optional<double> number(const std::string& text) {
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

InsightsReport report_for(const std::vector<CsvRun>& runs, const test::TempDir& dir) {
  const auto path = dir / "export.csv";
  write_file_atomic(path, test::export_csv(runs));
  return build_insights_report(track::read_wandb_csv(path));
}

std::string conclusion(const InsightsReport& r, const std::string& topic) {
  for (const auto& c : r.conclusions) {
    if (c.topic == topic) return c.text;
  }
  return "(no '" + topic + "' conclusion)";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(InsightsReference, EveryTableIsReproducedInJsonAndMarkdown) {
  IRIS_REQUIRE_REFERENCE(reference);
  const auto ref_tables = test::parse_markdown_tables(reference);
  test::TempDir dir;
  const InsightsReport rep = report_for(test::reference_runs(ref_tables), dir);
  const auto files = write_insights_report(rep, dir / "out", {false});
  const auto json = nlohmann::ordered_json::parse(read_file(files.json));
  const auto md_tables = test::parse_markdown_tables(read_file(files.markdown));

  // A baseline and a trained run share a name, as in the study's export: both are kept apart.
  const std::string shared = "cholecseg8k_mask_mem__148297";
  const auto& in = rep.insights;
  EXPECT_EQ(
      std::count_if(in.comparison.begin(), in.comparison.end(),
                    [&](const ChangeRow& r) { return r.name == shared && r.recipe == "mem"; }),
      1);
  EXPECT_EQ(std::count_if(in.baselines.begin(), in.baselines.end(),
                          [&](const BaselineRow& b) { return b.name == shared; }),
            1);

  for (const auto& [heading, id] : kReferenceTables) {
    SCOPED_TRACE(heading);
    const MdTable& ref = test::table_under(ref_tables, heading);
    // JSON: row objects keyed by the reference's column names, in its column order.
    const auto& rows = json.at("tables").at(id);
    ASSERT_EQ(rows.size(), ref.rows.size());
    // Markdown: the same table, printed.
    const MdTable& md = test::table_under(md_tables, heading);
    ASSERT_EQ(md.columns, ref.columns);
    ASSERT_EQ(md.rows.size(), ref.rows.size());
    for (std::size_t r = 0; r < ref.rows.size(); ++r) {
      std::vector<std::string> keys;
      for (const auto& item : rows[r].items()) keys.push_back(item.key());
      ASSERT_EQ(keys, ref.columns);
      for (std::size_t c = 0; c < ref.columns.size(); ++c) {
        SCOPED_TRACE(::testing::Message() << "row " << r << " column " << ref.columns[c]);
        const std::string& want = ref.rows[r][c];
        const auto& got = rows[r].at(ref.columns[c]);
        if (const auto v = number(want)) {
          ASSERT_TRUE(got.is_number()) << got;
          EXPECT_NEAR(got.get<double>(), *v, tolerance(ref.columns[c]));
          const auto printed = number(md.rows[r][c]);
          ASSERT_TRUE(printed.has_value()) << md.rows[r][c];
          EXPECT_NEAR(*printed, *v, tolerance(ref.columns[c]));
        } else {
          EXPECT_EQ(got.get<std::string>(), want);
          EXPECT_EQ(md.rows[r][c], want);
        }
      }
    }
  }
}

// Runs of the reference study, changed by `edit` (which may alter Dice of trained runs).
std::vector<CsvRun> edited(const std::vector<MdTable>& tables,
                           const std::function<void(CsvRun&)>& edit) {
  auto runs = test::reference_runs(tables);
  for (auto& r : runs) {
    if (r.epochs != 0) edit(r);
  }
  return runs;
}

bool has_memory(const CsvRun& r) {
  return r.recipe.rfind("mem", 0) == 0;
}

TEST(InsightsReference, ConclusionsFollowTheTables) {
  IRIS_REQUIRE_REFERENCE(reference);
  const auto tables = test::parse_markdown_tables(reference);
  test::TempDir dir;
  const InsightsReport rep = report_for(test::reference_runs(tables), dir);

  // Count losses straight from the reference table.
  const MdTable& cmp = test::table_under(tables, "Trained Models vs Baseline");
  int lower = 0;
  for (const auto& row : cmp.rows)
    lower += std::stod(row[cmp.column("eval/Dice")]) < std::stod(row[cmp.column("Dice_baseline")]);
  EXPECT_TRUE(
      contains(conclusion(rep, "wins"),
               std::to_string(lower) + " of 63 trained runs have lower Dice than their baseline"))
      << conclusion(rep, "wins");

  EXPECT_TRUE(contains(conclusion(rep, "memory"), "did not improve mean Dice on any dataset"))
      << conclusion(rep, "memory");
  EXPECT_TRUE(contains(conclusion(rep, "memory"), "0.7946 with vs 0.7959 without on cholecseg8k"));
  EXPECT_EQ(conclusion(rep, "recipe").rfind("md+pe+ie ranks first by mean Dice", 0), 0u)
      << conclusion(rep, "recipe");
  EXPECT_TRUE(contains(conclusion(rep, "recipe"), "(0.6809; mean Dice change +6.65%; 9 runs)"));
  EXPECT_TRUE(contains(conclusion(rep, "prompt_gain"), "concentrate on point prompts"))
      << conclusion(rep, "prompt_gain");
  EXPECT_TRUE(contains(conclusion(rep, "image_encoder"), "on every dataset"))
      << conclusion(rep, "image_encoder");
  EXPECT_TRUE(contains(conclusion(rep, "seeds"), "single run (one seed)"));
  EXPECT_TRUE(contains(conclusion(rep, "mae_units"), "source's units"));
  EXPECT_TRUE(contains(conclusion(rep, "mae_units"), "unknown"));
  // The reference's prose claims point prompts lag on every dataset; its own table says otherwise.
  EXPECT_TRUE(contains(conclusion(rep, "prompt"), "lowest with")) << conclusion(rep, "prompt");
  EXPECT_TRUE(contains(conclusion(rep, "prompt"), "box prompts on endovis17 (0.7981)"))
      << conclusion(rep, "prompt");
  for (const char* topic :
       {"scope", "overall", "wins", "wins_by_group", "memory", "memory_pairs", "memory_by_prompt",
        "image_encoder", "image_encoder_pairs", "prompt", "prompt_gain", "recipe", "best"}) {
    EXPECT_FALSE(contains(conclusion(rep, topic), "(no '"))
        << topic << " was not written or was dropped";
  }
  for (const auto& c : rep.conclusions)
    EXPECT_TRUE(unbacked_numbers(c.text, rep.tables).empty()) << c.text;

  EXPECT_TRUE(
      contains(conclusion(rep, "overall"), "raised mean Dice over the baseline on every dataset"))
      << conclusion(rep, "overall");

  // Data built the other way round: each sentence flips.
  const InsightsReport down = report_for(edited(tables, [](CsvRun& r) { r.dice *= 0.5; }), dir);
  EXPECT_TRUE(contains(conclusion(down, "overall"),
                       "did not raise mean Dice over the baseline on any dataset"))
      << conclusion(down, "overall");
  EXPECT_TRUE(contains(conclusion(down, "wins"), "63 of 63 trained runs have lower Dice"));

  const InsightsReport mem = report_for(edited(tables,
                                               [](CsvRun& r) {
                                                 if (has_memory(r)) r.dice += 0.05;
                                               }),
                                        dir);
  EXPECT_TRUE(contains(conclusion(mem, "memory"), "improved mean Dice on every dataset"))
      << conclusion(mem, "memory");
  EXPECT_FALSE(contains(conclusion(mem, "memory"), "did not improve"));

  const InsightsReport md = report_for(edited(tables,
                                              [](CsvRun& r) {
                                                if (r.recipe == "md") r.dice += 0.1;
                                              }),
                                       dir);
  EXPECT_EQ(conclusion(md, "recipe").rfind("md ranks first by mean Dice", 0), 0u)
      << conclusion(md, "recipe");

  const InsightsReport box = report_for(edited(tables,
                                               [](CsvRun& r) {
                                                 if (r.prompt == "box") r.dice += 0.15;
                                               }),
                                        dir);
  EXPECT_TRUE(contains(conclusion(box, "prompt_gain"), "concentrate on box prompts"))
      << conclusion(box, "prompt_gain");

  const InsightsReport all_up =
      report_for(edited(tables, [](CsvRun& r) { r.dice = std::max(r.dice, 0.99); }), dir);
  EXPECT_TRUE(contains(conclusion(all_up, "wins"), "0 of 63 trained runs have lower Dice"))
      << conclusion(all_up, "wins");

  const InsightsReport ie = report_for(edited(tables,
                                              [](CsvRun& r) {
                                                if (contains(r.recipe, "ie")) r.dice -= 0.1;
                                              }),
                                       dir);
  EXPECT_TRUE(contains(conclusion(ie, "image_encoder"), "on no dataset"))
      << conclusion(ie, "image_encoder");
  EXPECT_TRUE(contains(conclusion(ie, "image_encoder_pairs"), "higher Dice in 0 of 18 pairs"))
      << conclusion(ie, "image_encoder_pairs");

  EXPECT_EQ(conclusion(rep, "epochs"), "(no 'epochs' conclusion)");
  auto longer = test::reference_runs(tables);
  longer.front().epochs = 100;
  EXPECT_TRUE(
      contains(conclusion(report_for(longer, dir), "epochs"),
               "62 with max_epochs 30 and 1 with max_epochs 100 (" + longer.front().name + ")"))
      << conclusion(report_for(longer, dir), "epochs");

  auto replicated = test::reference_runs(tables);
  CsvRun again = replicated.front();
  again.name += "_seed2";
  replicated.push_back(again);
  const InsightsReport rep2 = report_for(replicated, dir);
  EXPECT_TRUE(contains(conclusion(rep2, "seeds"), "up to 2 runs")) << conclusion(rep2, "seeds");
}

TEST(Insights, SentenceQuotingAnUnprintedNumberIsFlagged) {
  Table t{
      "t", "T", "", {{"x", CellFormat::kMetric}, {"y", CellFormat::kPercent}}, {{0.12344, 3.456}}};
  EXPECT_TRUE(
      unbacked_numbers("x is 0.1234 and y is +3.46% on cholecseg8k run a__148297.", {t}).empty());
  EXPECT_EQ(unbacked_numbers("x is 0.1235.", {t}), std::vector<std::string>{"0.1235"});
}

// A small hand-made export: two datasets, one without a baseline for "point".
std::string small_export() {
  std::vector<CsvRun> runs = {
      {"ds_box_mem__0", "ds", "box", "mem", 0.50, 0.40, 2.0, 0},
      {"ds_box_md__1", "ds", "box", "md", 0.55, 0.45, 1.5, 30},
      {"ds_box_mem+md__2", "ds", "box", "mem+md", 0.60, 0.50, 1.0, 30},
      {"ds_point_md__3", "ds", "point", "md", 0.70, 0.60, 1.0, 30},
  };
  return test::export_csv(runs);
}

TEST(InsightsBadInput, RunWithoutBaselineIsExcludedAndListed) {
  test::TempDir dir;
  write_file_atomic(dir / "e.csv", small_export());
  const InsightsReport rep = build_insights_report(track::read_wandb_csv(dir / "e.csv"));
  ASSERT_EQ(rep.insights.comparison.size(), 2u);
  ASSERT_EQ(rep.insights.excluded.size(), 1u);
  EXPECT_EQ(rep.insights.excluded[0].name, "ds_point_md__3");
  EXPECT_EQ(rep.insights.excluded[0].line, 5u);
  EXPECT_EQ(rep.insights.missing_baselines, std::vector<std::string>{"ds/point"});
  EXPECT_TRUE(
      contains(conclusion(rep, "excluded"), "1 of 3 trained runs are excluded from every table"));
  EXPECT_TRUE(contains(conclusion(rep, "excluded"), "missing baselines: ds/point"));
  // Nothing is filled in: the excluded run appears in no table but "excluded_runs".
  const auto files = write_insights_report(rep, dir / "out", {false});
  const auto json = nlohmann::json::parse(read_file(files.json));
  for (const auto& [id, rows] : json.at("tables").items()) {
    if (id == "excluded_runs") continue;
    EXPECT_FALSE(contains(rows.dump(), "ds_point_md__3")) << id;
  }
  EXPECT_EQ(json["tables"]["excluded_runs"][0]["Name"], "ds_point_md__3");
  EXPECT_TRUE(contains(read_file(files.markdown),
                       "no baseline (max_epochs 0) for dataset 'ds', prompt type 'point'"));
  // Hand-computed: baseline Dice 0.5; md 0.55 (+10%), mem+md 0.60 (+20%); MAE 2 -> 1.5 (-25%), 1
  // (-50%).
  const auto& in = rep.insights;
  ASSERT_EQ(in.overall.size(), 1u);
  EXPECT_NEAR(in.overall[0].dice_change, 15.0, 1e-9);
  EXPECT_NEAR(in.overall[0].mae_change, -37.5, 1e-9);
  EXPECT_NEAR(*in.memory[0].with, 0.60, 1e-12);
  EXPECT_NEAR(*in.memory[0].without, 0.55, 1e-12);
  EXPECT_EQ(in.recipe_ranking[0].recipe, "mem+md");
  EXPECT_EQ(in.best_per_dataset[0].name, "ds_box_mem+md__2");
  // The memory pair md vs mem+md exists and is counted.
  EXPECT_TRUE(contains(conclusion(rep, "memory_pairs"), "higher Dice in 1 of 1 pairs"));
}

TEST(InsightsBadInput, DuplicateBaselineNamesBothRuns) {
  std::string text = small_export();
  text +=
      "\"ds_box_mem__9\",\"0.51\",\"2.1\",\"0.41\",\"box\",\"[\"\"memory_encoder\"\"]\",\"ds\","
      "\"0\"\n";
  try {
    build_insights_report(track::parse_wandb_csv(text, "e.csv"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(
        contains(msg,
                 "e.csv: duplicate baseline for dataset 'ds', prompt type 'box': line 2 run "
                 "'ds_box_mem__0' and line 6, run 'ds_box_mem__9'"))
        << msg;
  }
}

TEST(InsightsBadInput, BaselineWithoutMetricIsAnError) {
  std::string text = small_export();
  text.replace(text.find("\"0.5\""), 5, "\"\"");
  try {
    build_insights_report(track::parse_wandb_csv(text, "e.csv"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_TRUE(
        contains(e.what(),
                 "e.csv: line 2, run 'ds_box_mem__0': baseline for dataset 'ds', prompt type "
                 "'box' has no Dice value"))
        << e.what();
  }
}

TEST(InsightsBadInput, TrainedRunWithoutMetricIsExcluded) {
  std::string text = small_export();
  text.replace(text.find("\"0.55\""), 6, "\"NaN\"");
  const InsightsReport rep = build_insights_report(track::parse_wandb_csv(text, "e.csv"));
  ASSERT_EQ(rep.insights.excluded.size(), 2u);
  EXPECT_EQ(rep.insights.excluded[0].name, "ds_box_md__1");
  EXPECT_EQ(rep.insights.excluded[0].reason, "no Dice value");
}

TEST(InsightsWriter, HtmlIsSelfContainedWithPlotsWhenAvailable) {
  IRIS_REQUIRE_REFERENCE(reference);
  test::TempDir dir;
  const InsightsReport rep =
      report_for(test::reference_runs(test::parse_markdown_tables(reference)), dir);
  const auto files = write_insights_report(rep, dir / "out");
  const std::string html = read_file(files.html);
  EXPECT_TRUE(contains(html, "<table id=\"trained_vs_baseline\">"));
  EXPECT_FALSE(contains(html, "src=\"http"));
  if (!plots_available()) {
    EXPECT_TRUE(files.plots.empty());
    EXPECT_TRUE(contains(html, "no PLplot"));
    return;
  }
  ASSERT_EQ(files.plots.size(), 3u);
  for (const auto& p : files.plots) {
    const std::string png = read_file(p);
    ASSERT_GT(png.size(), 1000u);
    EXPECT_EQ(png.substr(1, 3), "PNG");
    EXPECT_TRUE(contains(html, "data:image/png;base64," + base64_encode(png).substr(0, 64)));
  }
  EXPECT_TRUE(contains(read_file(files.markdown), "!["));
}

TEST(InsightsWriter, Base64) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace iris::report
