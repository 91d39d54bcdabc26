// The insights tables of a fine-tuning study: every trained run against the untrained baseline of
// its (dataset, prompt type), then summaries by dataset, module, prompt type and recipe. The seven
// tables of the Python tool are reproduced with its formulas; the others are added for analysis.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "report/table.h"
#include "track/run_table.h"

namespace iris::report {

// One trained run and its baseline. Changes are relative, in percent: (trained - base) / base * 100
// (for MAE too, so a negative MAE change is an improvement).
struct ChangeRow {
  std::string dataset, prompt_type, recipe, name;
  std::size_t line = 0;
  std::vector<std::string> modules;  // sorted trainable modules
  int max_epochs = 0;
  bool memory = false, image_encoder = false;
  double dice = 0, dice_baseline = 0, dice_change = 0;
  double miou = 0, miou_baseline = 0, miou_change = 0;
  double mae = 0, mae_baseline = 0, mae_change = 0;
};

struct DatasetChange {
  std::string dataset;
  double dice_change = 0, miou_change = 0, mae_change = 0;
  std::size_t runs = 0;
};

// A mean over the runs without / with a module; nullopt when that side has no runs.
struct SplitMean {
  std::string dataset;
  std::optional<double> without = std::nullopt, with = std::nullopt;
  std::size_t runs_without = 0, runs_with = 0;
};

// dataset -> prompt type -> mean (nullopt when the cell has no runs).
struct PromptGrid {
  std::string dataset;
  std::map<std::string, std::optional<double>> values = {};
};

struct BestRun {
  std::string dataset, name, recipe, prompt_type;
  double dice = 0, dice_change = 0;
};

struct RecipeSummary {
  std::string recipe;
  double mean_dice = 0, mean_change = 0;
  std::size_t runs = 0;
};

// Runs of a group (a recipe or a prompt type) whose Dice is higher / lower / equal to their
// baseline's, compared at the printed precision (4 decimals) so counts agree with the tables.
struct WinLoss {
  std::string group;
  std::size_t runs = 0, higher = 0, lower = 0, equal = 0;
  double mean_change = 0;
};

// Two runs of the same dataset and prompt type whose module sets differ only by one component.
struct PairedDiff {
  std::string dataset, prompt_type, with_recipe, without_recipe;
  double dice_with = 0, dice_without = 0;
  double difference() const { return dice_with - dice_without; }
};

// Pairs summarised per prompt type (the interaction of a component with the prompt), then over
// all prompt types in a last row named kAllPrompts.
inline constexpr const char* kAllPrompts = "all";
struct PairSummary {
  std::string prompt_type;
  std::size_t pairs = 0, higher = 0, lower = 0;
  double mean_difference = 0;
};

struct BaselineRow {
  std::string dataset, prompt_type, name;
  std::size_t line = 0;
  double dice = 0, miou = 0, mae = 0;
};

// The study's "performance table": rows baseline + recipes, columns (dataset, prompt type).
struct PerformanceCell {
  double dice = 0, miou = 0, mae = 0;
  std::size_t runs = 0;
  bool best = false;  // highest Dice among trained recipes of this column
};
struct PerformanceTable {
  std::vector<std::pair<std::string, std::string>> columns;  // (dataset, prompt type)
  std::vector<std::string> rows;                             // "baseline", then recipes
  std::map<std::string, std::map<std::pair<std::string, std::string>, PerformanceCell>> cells;
};

// A run left out of the analysis and why (e.g. no baseline for its dataset and prompt type).
struct ExcludedRun {
  std::string name;
  std::size_t line = 0;
  std::string dataset, prompt_type, recipe;
  std::string reason;
};

struct InsightTables {
  std::string source;
  std::vector<std::string> datasets, prompt_types, recipes;  // sorted
  std::size_t trained_runs = 0;                              // trained runs in the input
  std::size_t max_runs_per_cell = 0;  // most runs of one (dataset, prompt, recipe): 1 = one seed
  std::vector<std::string> missing_baselines;  // "dataset/prompt" without baseline

  std::vector<BaselineRow> baselines;
  std::vector<ChangeRow> comparison;  // grouped by (dataset, prompt type), input order inside
  std::vector<DatasetChange> overall;
  std::vector<SplitMean> memory;          // mean Dice
  std::vector<SplitMean> image_encoder;   // mean Dice change (%)
  std::vector<PromptGrid> prompt_dice;    // mean Dice
  std::vector<PromptGrid> prompt_change;  // mean Dice change (%)
  std::vector<BestRun> best_per_dataset;
  std::vector<RecipeSummary> recipe_ranking;  // by mean Dice, highest first
  std::vector<WinLoss> by_recipe, by_prompt;
  std::vector<PairedDiff> memory_pairs, image_encoder_pairs;
  std::vector<PairSummary> memory_by_prompt, image_encoder_by_prompt;
  PerformanceTable performance;
  std::vector<ExcludedRun> excluded;
};

// Computes every table. Throws InputError naming the file, lines and runs when a (dataset, prompt
// type) has more than one baseline, or a baseline lacks a metric. Trained runs without a baseline
// or without a metric are listed in `excluded`, never compared against a made-up value.
InsightTables compute_insights(const track::RunTable& runs);

// Every table in report order. The first seven have the Python tool's ids' columns and names
// (e.g. "Dice_improvement_%", "Without Memory"); the rest are added for analysis.
std::vector<Table> insight_tables(const InsightTables& insights);

// Looks a table up by id; throws std::out_of_range when there is none.
const Table& find_table(const std::vector<Table>& tables, const std::string& id);

// Rounding used for every printed value and every comparison made in the text.
double round_to(double value, int decimals);
inline constexpr int kMetricDecimals = 4;
inline constexpr int kPercentDecimals = 2;

}  // namespace iris::report
