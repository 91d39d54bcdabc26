// The training report of one run folder (`iris report training RUN_DIR`, also written at the end
// of `iris train`): report/training_report.md, a self-contained training_report.html and PNG plots.
// Every number comes from metrics.jsonl (and summary.json / config.yaml when present), every
// derived number states its definition, and every sentence is generated from those numbers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "report/table.h"

namespace iris::report {

namespace fs = std::filesystem;

// One optimiser-step row of metrics.jsonl.
struct TrainStepRow {
  int64_t step = 0;
  double loss = 0;
  double dice = 0;
  double lr = 0;
  std::optional<double> data_ms, compute_ms, samples_per_s, peak_rss_mb;
};

// One validation row of metrics.jsonl.
struct ValidationRow {
  int64_t step = 0;
  double loss = 0;
  double dice = 0;  // mean over classes and episodes, as logged
  std::vector<std::pair<std::string, double>> per_class;
};

struct TrainingLog {
  fs::path metrics_path;
  std::vector<TrainStepRow> train;  // by step
  std::vector<ValidationRow> validation;
};

// Reads RUN_DIR/metrics.jsonl. Throws InputError naming the file (and the line) when it is
// missing, holds a line that is not a JSON object with numeric fields, or has no training rows.
// A torn last line (a crash mid-write) is ignored, as everywhere else.
TrainingLog read_training_log(const fs::path& run_dir);

// Thresholds of the over/under-fitting verdict; the report prints them.
struct FitThresholds {
  double relative_gap = 0.10;     // (val loss - train loss) / train loss above this: a gap
  double trend = 0.02;            // relative change of val loss over the last third beyond ±this
  double dice_drop_points = 2.0;  // best - last validation Dice (points) above this: a decline
  double low_train_dice = 0.5;    // final training Dice below this: underfitting
};

enum class FitVerdict { kOverfitting, kUnderfitting, kStillImproving, kNoOverfitting };

struct FitAssessment {
  FitVerdict verdict = FitVerdict::kNoOverfitting;
  int64_t step = 0;       // the last validation's step
  double val_loss = 0;    // at `step`
  double train_loss = 0;  // mean training loss over the steps (previous validation, step]
  int64_t train_from = 0, train_to = 0;  // the steps of that mean
  double relative_gap = 0;               // (val_loss - train_loss) / train_loss
  // Relative change of the validation loss between the first and last validation of the last
  // third of training (steps > 2/3 of the last step); nullopt with fewer than two there.
  std::optional<double> val_trend;
  int64_t trend_from = 0, trend_to = 0;
  double best_minus_last_points = 0;  // 100 · (best - last validation Dice)
  double final_train_dice = 0;        // mean training Dice over the last 10% of steps
  std::string sentence;               // the verdict with its numbers and thresholds
};

// Numbers the report is built from (all defined in the key-metrics table).
struct TrainingNumbers {
  int64_t first_step = 0, last_step = 0, logged_steps = 0;
  std::optional<int64_t> configured_steps;  // summary.json "steps" when the run finished
  bool finished = false;                    // summary.json present
  std::optional<double> wall_seconds;       // summary.json time/seconds
  int64_t window = 1;                       // steps in the first/last 10% windows
  double initial_train_loss = 0, final_train_loss = 0;  // means over the windows
  double last_step_train_loss = 0;
  double loss_reduction = 0;  // (initial - final) / initial
  double initial_train_dice = 0, final_train_dice = 0;
  double first_lr = 0, peak_lr = 0, last_lr = 0;
  std::optional<ValidationRow> first_validation, last_validation, best_validation;
  double data_ms = 0, compute_ms = 0;  // sums over logged steps
  std::optional<double> mean_samples_per_s, peak_rss_mb;
};

struct TrainingReport {
  std::string run_name;
  TrainingLog log;
  TrainingNumbers numbers;
  FitThresholds thresholds;
  FitAssessment fit;
  std::string config_yaml;           // empty when config.yaml is missing
  std::vector<std::string> summary;  // executive summary sentences
  Table key_metrics, per_class, timing, detailed_log;
  std::vector<std::string> conclusions;
  std::vector<std::string> next_steps;
};

// Reads the run folder and computes the report (see read_training_log for the errors).
TrainingReport build_training_report(const fs::path& run_dir, const FitThresholds& thresholds = {});

// The verdict alone, from a log (exposed for tests).
FitAssessment assess_fit(const TrainingLog& log, const FitThresholds& thresholds = {});

struct TrainingReportFiles {
  fs::path markdown, html;
  std::vector<fs::path> plots;  // empty without PLplot or with plots turned off
  std::string plot_note;        // why there are no plots, if there are none
};

struct TrainingReportOptions {
  bool plots = true;
  fs::path out_dir;  // empty: RUN_DIR/report
};

// Builds the report and writes every file atomically.
TrainingReportFiles write_training_report(const fs::path& run_dir,
                                          const TrainingReportOptions& options = {});

}  // namespace iris::report
