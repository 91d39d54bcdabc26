#include "report/insights.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"

namespace iris::report {

namespace {

using track::RunRecord;
using Key = std::pair<std::string, std::string>;  // (dataset, prompt type)

double relative_change(double trained, double base) {
  return (trained - base) / base * 100.0;
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

template <typename T>
std::vector<T> sorted_unique(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Sorted module set, the identity of a recipe independent of its name.
std::vector<std::string> module_set(std::vector<std::string> modules) {
  return sorted_unique(std::move(modules));
}

std::vector<std::string> without_modules(const std::vector<std::string>& modules,
                                         const std::set<std::string>& drop) {
  std::vector<std::string> out;
  for (const auto& m : modules) {
    if (!drop.count(m)) out.push_back(m);
  }
  return out;
}

// Recipes from few to many components, so the performance table reads like the study's.
bool recipe_order(const std::string& a, const std::string& b) {
  const auto ta = std::count(a.begin(), a.end(), '+');
  const auto tb = std::count(b.begin(), b.end(), '+');
  return ta != tb ? ta < tb : a < b;
}

std::map<Key, BaselineRow> collect_baselines(const track::RunTable& table, InsightTables& out) {
  std::map<Key, BaselineRow> baselines;
  for (const RunRecord& run : table.runs) {
    if (!run.is_baseline) continue;
    if (run.dataset.empty() || run.prompt_type.empty()) {
      throw InputError(
          file_message(table.source,
                       fmt::format("{}: baseline has no dataset or prompt type; both are needed to "
                                   "match it with trained runs",
                                   run.where())));
    }
    const Key key{run.dataset, run.prompt_type};
    if (const auto it = baselines.find(key); it != baselines.end()) {
      throw InputError(file_message(
          table.source,
          fmt::format("duplicate baseline for dataset '{}', prompt type '{}': line {} run '{}' and "
                      "{} (baselines are runs with max_epochs 0; keep exactly one per dataset and "
                      "prompt type)",
                      key.first, key.second, it->second.line, it->second.name, run.where())));
    }
    BaselineRow row{run.dataset, run.prompt_type, run.name, run.line};
    for (const auto& [metric, label, target] :
         {std::tuple{track::kDice, "Dice", &row.dice}, std::tuple{track::kMiou, "mIoU", &row.miou},
          std::tuple{track::kMae, "MAE", &row.mae}}) {
      const auto v = run.metric(metric);
      if (!v) {
        throw InputError(file_message(
            table.source,
            fmt::format("{}: baseline for dataset '{}', prompt type '{}' has no {} "
                        "value; every trained run of that group would lack a reference",
                        run.where(), run.dataset, run.prompt_type, label)));
      }
      *target = *v;
    }
    baselines.emplace(key, row);
  }
  for (const auto& [key, row] : baselines) out.baselines.push_back(row);
  return baselines;
}

// Trained runs with a usable baseline, as comparison rows in input order; the rest go to
// `excluded` with the reason.
std::vector<ChangeRow> compare_runs(const track::RunTable& table,
                                    const std::map<Key, BaselineRow>& baselines,
                                    InsightTables& out) {
  std::vector<ChangeRow> rows;
  std::set<Key> missing;
  for (const RunRecord& run : table.runs) {
    if (run.is_baseline) continue;
    ++out.trained_runs;
    auto exclude = [&](std::string reason) {
      out.excluded.push_back(
          {run.name, run.line, run.dataset, run.prompt_type, run.recipe, std::move(reason)});
    };
    const auto base = baselines.find({run.dataset, run.prompt_type});
    if (base == baselines.end()) {
      exclude(fmt::format("no baseline (max_epochs 0) for dataset '{}', prompt type '{}'",
                          run.dataset, run.prompt_type));
      missing.insert({run.dataset, run.prompt_type});
      continue;
    }
    const auto dice = run.metric(track::kDice), miou = run.metric(track::kMiou),
               mae = run.metric(track::kMae);
    if (!dice || !miou || !mae) {
      exclude(fmt::format("no {} value", !dice ? "Dice" : !miou ? "mIoU" : "MAE"));
      continue;
    }
    if (run.recipe.empty()) {
      exclude("no recipe: the name has no third '_'-separated token and there is no recipe column");
      continue;
    }
    const BaselineRow& b = base->second;
    if (b.dice == 0 || b.miou == 0 || b.mae == 0) {
      exclude(fmt::format("baseline '{}' has a zero metric, so the relative change is undefined",
                          b.name));
      continue;
    }
    ChangeRow row;
    row.dataset = run.dataset;
    row.prompt_type = run.prompt_type;
    row.recipe = run.recipe;
    row.name = run.name;
    row.line = run.line;
    row.modules = module_set(run.trainable_modules);
    row.max_epochs = run.max_epochs;
    row.memory = run.has_memory();
    row.image_encoder = run.has_image_encoder();
    row.dice = *dice;
    row.dice_baseline = b.dice;
    row.dice_change = relative_change(*dice, b.dice);
    row.miou = *miou;
    row.miou_baseline = b.miou;
    row.miou_change = relative_change(*miou, b.miou);
    row.mae = *mae;
    row.mae_baseline = b.mae;
    row.mae_change = relative_change(*mae, b.mae);
    rows.push_back(row);
  }
  for (const auto& [dataset, prompt] : missing)
    out.missing_baselines.push_back(dataset + "/" + prompt);
  // Group by (dataset, prompt type); a stable sort keeps the input order inside each group.
  std::stable_sort(rows.begin(), rows.end(), [](const ChangeRow& a, const ChangeRow& b) {
    return std::tie(a.dataset, a.prompt_type) < std::tie(b.dataset, b.prompt_type);
  });
  return rows;
}

// One cell of the study design: the mean over replicate runs of a (dataset, prompt, module set).
struct DesignCell {
  std::string recipe;
  std::vector<std::string> modules;
  std::vector<double> dice;
};

std::vector<PairedDiff> pair_by_component(
    const std::map<std::tuple<std::string, std::string, std::vector<std::string>>, DesignCell>&
        cells,
    const std::set<std::string>& component, const std::string& marker) {
  std::vector<PairedDiff> pairs;
  for (const auto& [key, cell] : cells) {
    const auto& [dataset, prompt, modules] = key;
    if (std::find(modules.begin(), modules.end(), marker) == modules.end()) continue;
    const auto rest = without_modules(modules, component);
    if (rest.empty()) continue;  // no "nothing trained" run to pair with
    const auto other = cells.find({dataset, prompt, rest});
    if (other == cells.end()) continue;
    pairs.push_back({dataset, prompt, cell.recipe, other->second.recipe, mean(cell.dice),
                     mean(other->second.dice)});
  }
  return pairs;
}

std::vector<PairSummary> summarise_pairs(const std::vector<PairedDiff>& pairs,
                                         const std::vector<std::string>& prompts) {
  std::vector<PairSummary> out;
  std::vector<std::string> groups = prompts;
  groups.push_back(kAllPrompts);
  for (const auto& prompt : groups) {
    PairSummary s{prompt};
    std::vector<double> diffs;
    for (const auto& p : pairs) {
      if (p.prompt_type != prompt && prompt != kAllPrompts) continue;
      ++s.pairs;
      const double with = round_to(p.dice_with, kMetricDecimals),
                   without = round_to(p.dice_without, kMetricDecimals);
      s.higher += with > without;
      s.lower += with < without;
      diffs.push_back(p.difference());
    }
    s.mean_difference = mean(diffs);
    if (s.pairs) out.push_back(s);
  }
  return out;
}

WinLoss win_loss(const std::string& group, const std::vector<const ChangeRow*>& rows) {
  WinLoss w{group};
  std::vector<double> changes;
  for (const ChangeRow* r : rows) {
    ++w.runs;
    const double t = round_to(r->dice, kMetricDecimals),
                 b = round_to(r->dice_baseline, kMetricDecimals);
    w.higher += t > b;
    w.lower += t < b;
    w.equal += t == b;
    changes.push_back(r->dice_change);
  }
  w.mean_change = mean(changes);
  return w;
}

}  // namespace

double round_to(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

InsightTables compute_insights(const track::RunTable& table) {
  InsightTables out;
  out.source = table.source;
  const auto baselines = collect_baselines(table, out);
  out.comparison = compare_runs(table, baselines, out);
  const auto& rows = out.comparison;

  for (const auto& r : rows) {
    out.datasets.push_back(r.dataset);
    out.prompt_types.push_back(r.prompt_type);
    out.recipes.push_back(r.recipe);
  }
  out.datasets = sorted_unique(out.datasets);
  out.prompt_types = sorted_unique(out.prompt_types);
  out.recipes = sorted_unique(out.recipes);

  auto select = [&](auto&& pred) {
    std::vector<const ChangeRow*> sel;
    for (const auto& r : rows) {
      if (pred(r)) sel.push_back(&r);
    }
    return sel;
  };
  auto values = [](const std::vector<const ChangeRow*>& sel, double ChangeRow::*field) {
    std::vector<double> v;
    for (const ChangeRow* r : sel) v.push_back(r->*field);
    return v;
  };

  for (const auto& ds : out.datasets) {
    const auto in_ds = select([&](const ChangeRow& r) { return r.dataset == ds; });
    out.overall.push_back({ds, mean(values(in_ds, &ChangeRow::dice_change)),
                           mean(values(in_ds, &ChangeRow::miou_change)),
                           mean(values(in_ds, &ChangeRow::mae_change)), in_ds.size()});

    auto split = [&](bool ChangeRow::*flag, double ChangeRow::*field) {
      SplitMean s{ds};
      const auto off = select([&](const ChangeRow& r) { return r.dataset == ds && !(r.*flag); });
      const auto on = select([&](const ChangeRow& r) { return r.dataset == ds && r.*flag; });
      if (!off.empty()) s.without = mean(values(off, field));
      if (!on.empty()) s.with = mean(values(on, field));
      s.runs_without = off.size();
      s.runs_with = on.size();
      return s;
    };
    out.memory.push_back(split(&ChangeRow::memory, &ChangeRow::dice));
    out.image_encoder.push_back(split(&ChangeRow::image_encoder, &ChangeRow::dice_change));

    PromptGrid dice{ds}, change{ds};
    for (const auto& prompt : out.prompt_types) {
      const auto cell =
          select([&](const ChangeRow& r) { return r.dataset == ds && r.prompt_type == prompt; });
      dice.values[prompt] =
          cell.empty() ? std::nullopt : std::optional(mean(values(cell, &ChangeRow::dice)));
      change.values[prompt] =
          cell.empty() ? std::nullopt : std::optional(mean(values(cell, &ChangeRow::dice_change)));
    }
    out.prompt_dice.push_back(dice);
    out.prompt_change.push_back(change);

    // Highest Dice; the first such run in table order wins a tie.
    const ChangeRow* best = nullptr;
    for (const ChangeRow* r : in_ds) {
      if (!best || r->dice > best->dice) best = r;
    }
    if (best)
      out.best_per_dataset.push_back(
          {ds, best->name, best->recipe, best->prompt_type, best->dice, best->dice_change});
  }

  for (const auto& recipe : out.recipes) {
    const auto sel = select([&](const ChangeRow& r) { return r.recipe == recipe; });
    out.recipe_ranking.push_back({recipe, mean(values(sel, &ChangeRow::dice)),
                                  mean(values(sel, &ChangeRow::dice_change)), sel.size()});
    out.by_recipe.push_back(win_loss(recipe, sel));
  }
  std::stable_sort(
      out.recipe_ranking.begin(), out.recipe_ranking.end(),
      [](const RecipeSummary& a, const RecipeSummary& b) { return a.mean_dice > b.mean_dice; });
  for (const auto& prompt : out.prompt_types) {
    out.by_prompt.push_back(
        win_loss(prompt, select([&](const ChangeRow& r) { return r.prompt_type == prompt; })));
  }

  // Design cells for paired comparisons and the replicate count.
  std::map<std::tuple<std::string, std::string, std::vector<std::string>>, DesignCell> cells;
  std::map<std::tuple<std::string, std::string, std::string>, std::size_t> per_recipe_cell;
  for (const auto& r : rows) {
    auto& cell = cells[{r.dataset, r.prompt_type, r.modules}];
    if (cell.recipe.empty()) cell.recipe = r.recipe;
    cell.modules = r.modules;
    cell.dice.push_back(r.dice);
    out.max_runs_per_cell =
        std::max(out.max_runs_per_cell, ++per_recipe_cell[{r.dataset, r.prompt_type, r.recipe}]);
  }
  out.memory_pairs =
      pair_by_component(cells, {"memory_encoder", "memory_attention"}, "memory_encoder");
  out.image_encoder_pairs = pair_by_component(cells, {"image_encoder"}, "image_encoder");
  out.memory_by_prompt = summarise_pairs(out.memory_pairs, out.prompt_types);
  out.image_encoder_by_prompt = summarise_pairs(out.image_encoder_pairs, out.prompt_types);

  // Performance table: baseline row, then recipes from few to many components.
  PerformanceTable& perf = out.performance;
  for (const auto& b : out.baselines) perf.columns.push_back({b.dataset, b.prompt_type});
  perf.rows.push_back("baseline");
  std::vector<std::string> recipes = out.recipes;
  std::sort(recipes.begin(), recipes.end(), recipe_order);
  perf.rows.insert(perf.rows.end(), recipes.begin(), recipes.end());
  for (const auto& b : out.baselines)
    perf.cells["baseline"][{b.dataset, b.prompt_type}] = {b.dice, b.miou, b.mae, 1, false};
  for (const auto& recipe : recipes) {
    for (const auto& column : perf.columns) {
      const auto sel = select([&](const ChangeRow& r) {
        return r.recipe == recipe && r.dataset == column.first && r.prompt_type == column.second;
      });
      if (sel.empty()) continue;
      perf.cells[recipe][column] = {mean(values(sel, &ChangeRow::dice)),
                                    mean(values(sel, &ChangeRow::miou)),
                                    mean(values(sel, &ChangeRow::mae)), sel.size(), false};
    }
  }
  for (const auto& column : perf.columns) {
    double best = -1;
    for (const auto& recipe : recipes) {
      if (auto it = perf.cells[recipe].find(column); it != perf.cells[recipe].end()) {
        best = std::max(best, round_to(it->second.dice, kMetricDecimals));
      }
    }
    for (const auto& recipe : recipes) {
      if (auto it = perf.cells[recipe].find(column); it != perf.cells[recipe].end()) {
        it->second.best = round_to(it->second.dice, kMetricDecimals) == best;
      }
    }
  }
  return out;
}

}  // namespace iris::report
