// InsightTables -> format-independent tables, with the Python tool's column names.
#include <fmt/format.h>

#include <stdexcept>

#include "report/insights.h"

namespace iris::report {

namespace {

using F = CellFormat;

Cell opt(const std::optional<double>& v) {
  return v ? Cell(*v) : Cell(std::monostate{});
}
Cell count(std::size_t n) {
  return Cell(static_cast<std::int64_t>(n));
}

Table pairs_table(const std::string& id, const std::string& title, const std::string& description,
                  const std::string& component, const std::vector<PairedDiff>& pairs) {
  Table t{id,
          title,
          description,
          {{"dataset"},
           {"prompt_type"},
           {"config without " + component},
           {"config with " + component},
           {"Dice without", F::kMetric},
           {"Dice with", F::kMetric},
           {"Dice difference", F::kMetric}}};
  for (const auto& p : pairs) {
    t.rows.push_back({p.dataset, p.prompt_type, p.without_recipe, p.with_recipe, p.dice_without,
                      p.dice_with, p.difference()});
  }
  return t;
}

Table pair_summary_table(const std::string& id, const std::string& title,
                         const std::string& description, const std::string& component,
                         const std::vector<PairSummary>& rows) {
  Table t{id,
          title,
          description,
          {{"prompt_type"},
           {"pairs", F::kCount},
           {component + " higher", F::kCount},
           {component + " lower", F::kCount},
           {"mean Dice difference", F::kMetric}}};
  for (const auto& s : rows)
    t.rows.push_back(
        {s.prompt_type, count(s.pairs), count(s.higher), count(s.lower), s.mean_difference});
  return t;
}

Table win_loss_table(const std::string& id, const std::string& title, const std::string& key,
                     const std::vector<WinLoss>& rows) {
  Table t{id,
          title,
          "Trained runs whose Dice is higher, lower or equal to their baseline's (compared at 4 "
          "decimals).",
          {{key},
           {"runs", F::kCount},
           {"higher_than_baseline", F::kCount},
           {"lower_than_baseline", F::kCount},
           {"equal_to_baseline", F::kCount},
           {"mean_dice_improvement", F::kPercent}}};
  for (const auto& w : rows) {
    t.rows.push_back(
        {w.group, count(w.runs), count(w.higher), count(w.lower), count(w.equal), w.mean_change});
  }
  return t;
}

Table prompt_grid_table(const std::string& id, const std::string& title,
                        const std::string& description, const std::vector<std::string>& prompts,
                        const std::vector<PromptGrid>& grid, F format) {
  Table t{id, title, description, {{"dataset"}}};
  for (const auto& p : prompts) t.columns.push_back({p, format});
  for (const auto& g : grid) {
    std::vector<Cell> row{g.dataset};
    for (const auto& p : prompts) row.push_back(opt(g.values.at(p)));
    t.rows.push_back(std::move(row));
  }
  return t;
}

}  // namespace

std::vector<Table> insight_tables(const InsightTables& in) {
  std::vector<Table> tables;

  Table cmp{
      "trained_vs_baseline",
      "Trained Models vs Baseline",
      "Every trained run against the epoch-0 baseline of its dataset and prompt type. Changes are "
      "(trained − baseline) / baseline × 100; for MAE (lower is better) a negative value is a "
      "reduction.",
      {{"dataset"},
       {"prompt_type"},
       {"config"},
       {"eval/Dice", F::kMetric},
       {"Dice_baseline", F::kMetric},
       {"Dice_improvement_%", F::kPercent},
       {"eval/mIoU", F::kMetric},
       {"mIoU_baseline", F::kMetric},
       {"mIoU_improvement_%", F::kPercent},
       {"eval/MAE", F::kMetric},
       {"MAE_baseline", F::kMetric},
       {"MAE_reduction_%", F::kPercent}}};
  for (const auto& r : in.comparison) {
    cmp.rows.push_back({r.dataset, r.prompt_type, r.recipe, r.dice, r.dice_baseline, r.dice_change,
                        r.miou, r.miou_baseline, r.miou_change, r.mae, r.mae_baseline,
                        r.mae_change});
  }
  tables.push_back(std::move(cmp));

  Table overall{"overall_impact",
                "Insight 1 · Overall Impact of Training",
                "Mean over each dataset's trained runs of the percentage change relative to the "
                "epoch-0 baseline.",
                {{"dataset"},
                 {"Dice_improvement_%", F::kPercent},
                 {"mIoU_improvement_%", F::kPercent},
                 {"MAE_reduction_%", F::kPercent}}};
  for (const auto& r : in.overall)
    overall.rows.push_back({r.dataset, r.dice_change, r.miou_change, r.mae_change});
  tables.push_back(std::move(overall));

  Table memory{"memory_contribution",
               "Insight 2 · Contribution of Memory Modules",
               "Mean Dice of trained runs without and with the memory encoder among their "
               "trainable modules.",
               {{"dataset"}, {"Without Memory", F::kMetric}, {"With Memory", F::kMetric}}};
  for (const auto& r : in.memory) memory.rows.push_back({r.dataset, opt(r.without), opt(r.with)});
  tables.push_back(std::move(memory));

  Table ie{
      "image_encoder_contribution",
      "Insight 3 · Value of Fine-Tuning the Image Encoder",
      "Mean Dice change (%) of trained runs without and with the image encoder trainable.",
      {{"dataset"}, {"Without Image Encoder", F::kPercent}, {"With Image Encoder", F::kPercent}}};
  for (const auto& r : in.image_encoder)
    ie.rows.push_back({r.dataset, opt(r.without), opt(r.with)});
  tables.push_back(std::move(ie));

  tables.push_back(prompt_grid_table(
      "prompt_type_effectiveness", "Insight 4 · Prompt-Type Effectiveness",
      "Mean Dice of trained runs per prompt type.", in.prompt_types, in.prompt_dice, F::kMetric));

  Table best{"best_configuration",
             "Insight 5 · Best Configuration per Dataset",
             "The trained run with the highest Dice on each dataset.",
             {{"dataset"},
              {"Name"},
              {"config"},
              {"eval/Dice", F::kMetric},
              {"Dice_improvement_%", F::kPercent}}};
  for (const auto& b : in.best_per_dataset)
    best.rows.push_back({b.dataset, b.name, b.recipe, b.dice, b.dice_change});
  tables.push_back(std::move(best));

  Table recipes{"best_recipe",
                "Insight 6 · Best Overall Fine-Tuning Recipe",
                "Per recipe over all datasets and prompt types: mean Dice, mean Dice change (%) "
                "and run count, "
                "highest mean Dice first.",
                {{"config"},
                 {"mean_dice", F::kMetric},
                 {"mean_dice_improvement", F::kPercent},
                 {"run_count", F::kCount}}};
  for (const auto& r : in.recipe_ranking)
    recipes.rows.push_back({r.recipe, r.mean_dice, r.mean_change, count(r.runs)});
  tables.push_back(std::move(recipes));

  // Added for analysis.
  Table perf{"performance_table",
             "Performance Table",
             "Dice / mIoU / MAE per recipe and column (dataset · prompt type); the baseline row is "
             "the epoch-0 "
             "model. Bold: the trained recipe with the highest Dice in the column.",
             {{"config"}}};
  for (const auto& [ds, prompt] : in.performance.columns)
    perf.columns.push_back({ds + " · " + prompt, F::kTriple});
  for (const auto& row : in.performance.rows) {
    std::vector<Cell> cells{row};
    const auto it = in.performance.cells.find(row);
    for (const auto& column : in.performance.columns) {
      if (it == in.performance.cells.end() || !it->second.count(column)) {
        cells.push_back(std::monostate{});
        continue;
      }
      const auto& c = it->second.at(column);
      cells.push_back(MetricTriple{c.dice, c.miou, c.mae, c.best});
    }
    perf.rows.push_back(std::move(cells));
  }
  tables.push_back(std::move(perf));

  tables.push_back(win_loss_table("wins_by_recipe", "Runs Above and Below Baseline by Recipe",
                                  "config", in.by_recipe));
  tables.push_back(win_loss_table("wins_by_prompt", "Runs Above and Below Baseline by Prompt Type",
                                  "prompt_type", in.by_prompt));
  tables.push_back(
      prompt_grid_table("dice_change_by_prompt", "Fine-Tuning Gain by Prompt Type",
                        "Mean Dice change (%) versus baseline per dataset and prompt type.",
                        in.prompt_types, in.prompt_change, F::kPercent));
  tables.push_back(
      pairs_table("memory_pairs", "Paired Comparison: Memory On vs Off",
                  "Same dataset and prompt type, same other trainable modules; only the memory "
                  "modules (memory_encoder, memory_attention) differ.",
                  "memory", in.memory_pairs));
  tables.push_back(pair_summary_table(
      "memory_by_prompt", "Memory × Prompt Type (paired)",
      "Memory on−off Dice differences of the pairs above, per prompt type and over all.", "memory",
      in.memory_by_prompt));
  tables.push_back(pairs_table(
      "image_encoder_pairs", "Paired Comparison: Image Encoder On vs Off",
      "Same dataset and prompt type, same other trainable modules; only image_encoder differs.",
      "image encoder", in.image_encoder_pairs));
  tables.push_back(pair_summary_table(
      "image_encoder_by_prompt", "Image Encoder × Prompt Type (paired)",
      "Image encoder on−off Dice differences of the pairs above, per prompt type and over all.",
      "image encoder", in.image_encoder_by_prompt));

  Table base{"baselines",
             "Baselines",
             "Epoch-0 runs (max_epochs 0), one per dataset and prompt type.",
             {{"dataset"},
              {"prompt_type"},
              {"Name"},
              {"line", F::kCount},
              {"eval/Dice", F::kMetric},
              {"eval/mIoU", F::kMetric},
              {"eval/MAE", F::kMetric}}};
  for (const auto& b : in.baselines) {
    base.rows.push_back({b.dataset, b.prompt_type, b.name, count(b.line), b.dice, b.miou, b.mae});
  }
  tables.push_back(std::move(base));

  Table excluded{
      "excluded_runs",
      "Excluded Runs",
      "Trained runs left out of every table above, with the reason. Nothing is filled in for them.",
      {{"Name"}, {"line", F::kCount}, {"dataset"}, {"prompt_type"}, {"config"}, {"reason"}}};
  for (const auto& e : in.excluded) {
    excluded.rows.push_back({e.name, count(e.line), e.dataset, e.prompt_type, e.recipe, e.reason});
  }
  tables.push_back(std::move(excluded));
  return tables;
}

const Table& find_table(const std::vector<Table>& tables, const std::string& id) {
  for (const auto& t : tables) {
    if (t.id == id) return t;
  }
  throw std::out_of_range("no table '" + id + "'");
}

}  // namespace iris::report
