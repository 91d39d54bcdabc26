// The training report: its numbers are those of metrics.jsonl, its verdict follows the numbers in
// both directions, and bad inputs name the file.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>

#include "core/atomic_file.h"
#include "core/error.h"
#include "report/plot.h"
#include "report/training_report.h"
#include "test_util.h"

namespace iris::report {
namespace {

// A metrics.jsonl of `steps` steps with validations every `every` steps; the functions give the
// training loss, validation loss and validation Dice per step.
void write_metrics(const fs::path& run, int steps, int every,
                   const std::function<double(int)>& train_loss,
                   const std::function<double(int)>& val_loss,
                   const std::function<double(int)>& val_dice) {
  fs::create_directories(run);
  std::string text;
  for (int s = 1; s <= steps; ++s) {
    const double lr = s <= 5 ? 1e-3 * s / 5 : 1e-3 * (1.0 - 0.5 * (s - 5) / (steps - 5));
    text += nlohmann::json{{"step", s},
                           {"train/loss", train_loss(s)},
                           {"train/dice", 1.0 - train_loss(s) / 2},
                           {"lr", lr},
                           {"time/data_ms", 2.0},
                           {"time/compute_ms", 8.0},
                           {"samples_per_s", 100.0 + s},
                           {"memory/peak_rss_mb", 500.0 + s}}
                .dump() +
            "\n";
    if (s % every == 0) {
      text +=
          nlohmann::json{{"step", s},
                         {"val/loss", val_loss(s)},
                         {"val/dice", val_dice(s)},
                         {"val/dice_per_class",
                          {{"Caudate_L", val_dice(s) + 0.05}, {"Putamen_R", val_dice(s) - 0.05}}}}
              .dump() +
          "\n";
    }
  }
  write_file_atomic(run / "metrics.jsonl", text);
}

std::string cell_text(const Table& t, const std::string& metric) {
  for (const auto& row : t.rows) {
    if (std::get<std::string>(row[0]) == metric) return std::get<std::string>(row[1]);
  }
  return "(missing)";
}

TEST(TrainingReport, NumbersEqualThoseInMetricsJsonl) {
  test::TempDir dir;
  const fs::path run = dir / "run";
  write_metrics(
      run, 60, 10, [](int s) { return 1.2 * std::exp(-s / 20.0) + 0.2; },
      [](int s) { return 1.3 * std::exp(-s / 20.0) + 0.25; },
      [](int s) { return s == 40 ? 0.8742 : 0.8457 + 0.0004 * s; });
  write_file_atomic(run / "summary.json", R"({"steps": 60, "time/seconds": 30.5})");
  write_file_atomic(run / "config.yaml", "optim:\n  iterations: 60\n");
  const TrainingReport rep = build_training_report(run);
  const auto& n = rep.numbers;
  EXPECT_EQ(n.logged_steps, 60);
  EXPECT_EQ(n.last_step, 60);
  EXPECT_TRUE(n.finished);
  ASSERT_TRUE(n.last_validation && n.best_validation && n.first_validation);
  EXPECT_EQ(n.last_validation->step, 60);
  EXPECT_DOUBLE_EQ(n.last_validation->dice, 0.8457 + 0.0004 * 60);
  EXPECT_EQ(n.best_validation->step, 40);
  EXPECT_DOUBLE_EQ(n.best_validation->dice, 0.8742);
  EXPECT_DOUBLE_EQ(n.first_validation->dice, 0.8457 + 0.0004 * 10);
  EXPECT_DOUBLE_EQ(n.last_lr, 1e-3 * 0.5);
  EXPECT_DOUBLE_EQ(n.peak_lr, 1e-3);
  EXPECT_DOUBLE_EQ(n.last_step_train_loss, 1.2 * std::exp(-3.0) + 0.2);
  EXPECT_EQ(n.window, 6);
  EXPECT_NEAR(n.data_ms, 120.0, 1e-9);
  EXPECT_DOUBLE_EQ(*n.peak_rss_mb, 560.0);
  // The printed values are these numbers.
  EXPECT_EQ(cell_text(rep.key_metrics, "Best validation Dice"), "0.8742");
  EXPECT_EQ(cell_text(rep.key_metrics, "Final validation Dice"),
            fmt::format("{:.4f}", 0.8457 + 0.024));
  EXPECT_EQ(cell_text(rep.key_metrics, "Logged training steps"), "60");
  EXPECT_EQ(cell_text(rep.key_metrics, "Validation Dice improvement"),
            fmt::format("{:+.2f} points", 100 * (0.024 - 0.004)));
  EXPECT_NE(cell_text(rep.key_metrics, "Learning rate").find("5.000e-04"), std::string::npos);
  ASSERT_EQ(rep.per_class.rows.size(), 2u);
  EXPECT_EQ(std::get<std::string>(rep.per_class.rows[0][0]), "Caudate_L");
  EXPECT_DOUBLE_EQ(std::get<double>(rep.per_class.rows[0][5]), 0.8457 + 0.024 + 0.05);

  const auto files = write_training_report(run);
  const std::string md = read_file(files.markdown);
  EXPECT_NE(md.find("improvement = +2.00 points (0.8497 at step 10 → 0.8697 at step 60)"),
            std::string::npos)
      << md;
  for (const char* section :
       {"## Executive summary", "## Key metrics", "## Training progress",
        "## Training configuration", "## Resource usage", "## Detailed training log",
        "## Conclusions", "### Next steps", "### Validation Dice per class", "iterations: 60"}) {
    EXPECT_NE(md.find(section), std::string::npos) << section;
  }
  EXPECT_NE(md.find(rep.fit.sentence), std::string::npos);
  const std::string html = read_file(files.html);
  EXPECT_EQ(html.find("src=\"loss_curves.png\""), std::string::npos) << "images are inlined";
  if (plots_available()) {
    EXPECT_EQ(files.plots.size(), 4u);
    EXPECT_NE(html.find("data:image/png;base64,"), std::string::npos);
    for (const auto& p : files.plots) EXPECT_EQ(read_file(p).substr(1, 3), "PNG") << p;
  }
}

TEST(TrainingReport, OverfittingVerdictFollowsTheNumbersInBothDirections) {
  test::TempDir dir;
  // Training loss keeps falling; validation loss turns up in the last third and Dice drops.
  write_metrics(
      dir / "overfit", 90, 10, [](int s) { return 1.0 * std::exp(-s / 15.0) + 0.05; },
      [](int s) { return s <= 50 ? 1.0 - 0.01 * s : 0.5 + 0.012 * (s - 50); },
      [](int s) { return s <= 50 ? 0.5 + 0.006 * s : 0.8 - 0.004 * (s - 50); });
  const FitAssessment over = build_training_report(dir / "overfit").fit;
  EXPECT_EQ(over.verdict, FitVerdict::kOverfitting) << over.sentence;
  EXPECT_EQ(over.sentence.rfind("Overfitting", 0), 0u) << over.sentence;
  EXPECT_GT(over.relative_gap, 0.10);
  ASSERT_TRUE(over.val_trend);
  EXPECT_GT(*over.val_trend, 0.02);
  EXPECT_NEAR(over.best_minus_last_points, 100 * (0.8 - (0.8 - 0.004 * 40)), 1e-9);
  EXPECT_NE(over.sentence.find(fmt::format("{:+.1f}%", 100 * over.relative_gap)),
            std::string::npos);

  // Validation loss follows the training loss closely and levels off: no overfitting.
  write_metrics(
      dir / "fit", 90, 10, [](int s) { return 1.0 * std::exp(-s / 8.0) + 0.05; },
      [](int s) { return 1.02 * std::exp(-s / 8.0) + 0.052; },
      [](int s) { return 0.5 + 0.3 * (1 - std::exp(-s / 15.0)); });
  const FitAssessment fit = build_training_report(dir / "fit").fit;
  EXPECT_NE(fit.verdict, FitVerdict::kOverfitting) << fit.sentence;
  EXPECT_EQ(fit.sentence.rfind("No sign of overfitting", 0), 0u) << fit.sentence;
  EXPECT_LE(fit.relative_gap, 0.10);

  // Validation loss still falling steeply in the last third: still improving.
  write_metrics(
      dir / "improving", 90, 10, [](int s) { return 1.0 - 0.004 * s; },
      [](int s) { return 1.0 - 0.005 * s; }, [](int s) { return 0.5 + 0.004 * s; });
  const FitAssessment improving = build_training_report(dir / "improving").fit;
  EXPECT_EQ(improving.verdict, FitVerdict::kStillImproving) << improving.sentence;
  const std::string md = read_file(write_training_report(dir / "improving", {false, {}}).markdown);
  EXPECT_NE(md.find("Train longer"), std::string::npos);
  EXPECT_NE(md.find("Plots were turned off."), std::string::npos);
}

TEST(TrainingReport, MissingOrCorruptMetricsNameTheFile) {
  test::TempDir dir;
  fs::create_directories(dir / "empty");
  try {
    build_training_report(dir / "empty");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "empty" / "metrics.jsonl").string()),
              std::string::npos)
        << e.what();
  }
  fs::create_directories(dir / "corrupt");
  write_file_atomic(dir / "corrupt" / "metrics.jsonl",
                    "{\"step\": 1, \"train/loss\": 1.0, \"train/dice\": 0.1, \"lr\": 0.001}\n"
                    "{\"step\": 2, \"train/loss\": oops}\n"
                    "{\"step\": 3, \"train/loss\": 1.0, \"train/dice\": 0.1, \"lr\": 0.001}\n");
  try {
    build_training_report(dir / "corrupt");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:2"), std::string::npos) << e.what();
  }
  write_file_atomic(
      dir / "corrupt" / "metrics.jsonl",
      "{\"step\": 1, \"train/loss\": \"high\", \"train/dice\": 0.1, \"lr\": 0.001}\n");
  EXPECT_THROW(build_training_report(dir / "corrupt"), InputError);
  write_file_atomic(dir / "corrupt" / "metrics.jsonl",
                    "{\"step\": 1, \"val/loss\": 1.0, \"val/dice\": 0.2}\n");
  EXPECT_THROW(build_training_report(dir / "corrupt"), InputError) << "no training rows";
  // A torn last line (crash mid-write) is not an error.
  write_file_atomic(
      dir / "corrupt" / "metrics.jsonl",
      "{\"step\": 1, \"train/loss\": 1.0, \"train/dice\": 0.1, \"lr\": 0.001}\n{\"step\": 2, \"tr");
  EXPECT_EQ(build_training_report(dir / "corrupt").numbers.logged_steps, 1);
}

TEST(TrainingReport, CommandWritesTheReportAndExitsWith3OnAMissingLog) {
  test::TempDir dir;
  write_metrics(
      dir / "run", 20, 5, [](int s) { return 1.0 / s; }, [](int s) { return 1.1 / s; },
      [](int s) { return 0.5 + 0.01 * s; });
  auto r =
      test::run_command(test::iris_binary() + " report training '" + (dir / "run").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "run" / "report" / "training_report.md"));
  EXPECT_TRUE(fs::exists(dir / "run" / "report" / "training_report.html"));
  fs::create_directories(dir / "none");
  r = test::run_command(test::iris_binary() + " report training '" + (dir / "none").string() + "'");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("metrics.jsonl"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace iris::report
