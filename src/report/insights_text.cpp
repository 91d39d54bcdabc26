#include "report/insights_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

namespace iris::report {

namespace {

double r4(double v) {
  return round_to(v, kMetricDecimals);
}
double r2(double v) {
  return round_to(v, kPercentDecimals);
}

// Values exactly as the tables print them.
std::string met(double v) {
  return format_cell(Cell(v), CellFormat::kMetric);
}
std::string pct(double v) {
  const std::string text = format_cell(Cell(v), CellFormat::kPercent);
  return (r2(v) > 0 ? "+" : "") + text + "%";
}

std::string join_and(const std::vector<std::string>& items) {
  if (items.empty()) return "";
  if (items.size() == 1) return items[0];
  std::string out;
  for (std::size_t i = 0; i + 1 < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + " and " + items.back();
}

// "every dataset", "no dataset" or "2 of 3 datasets (a, b)".
std::string how_many(const std::vector<std::string>& hits, std::size_t total,
                     const std::string& noun) {
  if (total > 0 && hits.size() == total) return total == 1 ? "the only " + noun : "every " + noun;
  if (hits.empty()) return "no " + noun;
  return fmt::format("{} of {} {}s ({})", hits.size(), total, noun, join_and(hits));
}

void add(std::vector<Conclusion>& out, const char* topic, std::string text) {
  out.push_back({topic, std::move(text)});
}

void scope(const InsightTables& in, std::vector<Conclusion>& out) {
  add(out, "scope",
      fmt::format("The source has {} baseline runs (max_epochs 0) and {} trained runs; {} trained "
                  "runs over {} "
                  "datasets ({}), {} prompt types and {} recipes are compared with the baseline of "
                  "their dataset "
                  "and prompt type.",
                  in.baselines.size(), in.trained_runs, in.comparison.size(), in.datasets.size(),
                  join_and(in.datasets), in.prompt_types.size(), in.recipes.size()));
  if (!in.excluded.empty()) {
    std::size_t no_baseline = 0;
    for (const auto& e : in.excluded) no_baseline += e.reason.rfind("no baseline", 0) == 0;
    std::string text =
        fmt::format("{} of {} trained runs are excluded from every table (see Excluded Runs)",
                    in.excluded.size(), in.trained_runs);
    if (no_baseline) {
      text += fmt::format(
          ": {} have no baseline for their dataset and prompt type (missing baselines: {})",
          no_baseline, join_and(in.missing_baselines));
      if (no_baseline < in.excluded.size()) {
        text += fmt::format(", {} for other reasons", in.excluded.size() - no_baseline);
      }
    }
    add(out, "excluded", text + "; no value is filled in for them.");
  }
}

void overall(const InsightTables& in, std::vector<Conclusion>& out) {
  if (in.overall.empty()) return;
  std::vector<std::string> rose, dice_parts, mae_parts;
  const DatasetChange* top = &in.overall.front();
  const DatasetChange* low = &in.overall.front();
  for (const auto& r : in.overall) {
    if (r2(r.dice_change) > 0) rose.push_back(r.dataset);
    dice_parts.push_back(fmt::format("{} on {}", pct(r.dice_change), r.dataset));
    mae_parts.push_back(fmt::format("{} on {}", pct(r.mae_change), r.dataset));
    if (r2(r.dice_change) > r2(top->dice_change)) top = &r;
    if (r2(r.dice_change) < r2(low->dice_change)) low = &r;
  }
  std::string text = rose.size() == in.overall.size()
                         ? "Training raised mean Dice over the baseline on every dataset: "
                     : rose.empty()
                         ? "Training did not raise mean Dice over the baseline on any dataset: "
                         : fmt::format("Training raised mean Dice over the baseline on {}: ",
                                       how_many(rose, in.overall.size(), "dataset"));
  text += join_and(dice_parts) + ".";
  if (in.overall.size() > 1 && top != low) {
    text += fmt::format(" The largest mean change is on {} ({}), the smallest on {} ({}).",
                        top->dataset, pct(top->dice_change), low->dataset, pct(low->dice_change));
  }
  text +=
      fmt::format(" Mean MAE changed by {} (negative: lower MAE, better).", join_and(mae_parts));
  add(out, "overall", text);
}

void wins(const InsightTables& in, std::vector<Conclusion>& out) {
  std::size_t runs = 0, higher = 0, lower = 0, equal = 0;
  for (const auto& w : in.by_prompt) {
    runs += w.runs;
    higher += w.higher;
    lower += w.lower;
    equal += w.equal;
  }
  if (!runs) return;
  add(out, "wins",
      fmt::format("{} of {} trained runs have lower Dice than their baseline ({} higher, {} equal "
                  "at 4 decimals).",
                  lower, runs, higher, equal));
  std::vector<std::string> by_recipe, by_prompt;
  for (const auto& r : in.recipe_ranking) {
    for (const auto& w : in.by_recipe) {
      if (w.group == r.recipe)
        by_recipe.push_back(fmt::format("{} {} of {}", w.group, w.lower, w.runs));
    }
  }
  for (const auto& w : in.by_prompt)
    by_prompt.push_back(fmt::format("{} {} of {}", w.group, w.lower, w.runs));
  add(out, "wins_by_group",
      fmt::format("Runs below their baseline, by recipe: {}; by prompt type: {}.",
                  join_and(by_recipe), join_and(by_prompt)));
}

void memory(const InsightTables& in, std::vector<Conclusion>& out) {
  std::vector<std::string> better, parts;
  std::size_t compared = 0;
  for (const auto& r : in.memory) {
    if (!r.with || !r.without) continue;
    ++compared;
    if (r4(*r.with) > r4(*r.without)) better.push_back(r.dataset);
    parts.push_back(
        fmt::format("{} with vs {} without on {}", met(*r.with), met(*r.without), r.dataset));
  }
  if (compared) {
    const std::string verdict =
        better.size() == compared ? "improved mean Dice on every dataset"
        : better.empty()          ? "did not improve mean Dice on any dataset"
                         : "improved mean Dice on " + how_many(better, compared, "dataset");
    add(out, "memory",
        fmt::format("Training the memory modules {}: {}. These means pool different recipe sets; "
                    "the paired "
                    "comparison holds the other modules fixed.",
                    verdict, join_and(parts)));
  }
  for (const auto& s : in.memory_by_prompt) {
    if (s.prompt_type != kAllPrompts || !s.pairs) continue;
    add(out, "memory_pairs",
        fmt::format(
            "Paired within dataset and prompt type with the other trainable modules unchanged, "
            "adding "
            "memory gave higher Dice in {} of {} pairs and lower in {} (mean Dice difference {}).",
            s.higher, s.pairs, s.lower, met(s.mean_difference)));
  }
  std::vector<std::string> per_prompt;
  for (const auto& s : in.memory_by_prompt) {
    if (s.prompt_type == kAllPrompts) continue;
    per_prompt.push_back(fmt::format("{} of {} {} pairs (mean difference {})", s.higher, s.pairs,
                                     s.prompt_type, met(s.mean_difference)));
  }
  if (per_prompt.size() > 1) {
    add(out, "memory_by_prompt",
        fmt::format("Memory × prompt type: memory gave higher Dice in {}.", join_and(per_prompt)));
  }
}

void image_encoder(const InsightTables& in, std::vector<Conclusion>& out) {
  std::vector<std::string> larger, parts;
  std::size_t compared = 0;
  for (const auto& r : in.image_encoder) {
    if (!r.with || !r.without) continue;
    ++compared;
    if (r2(*r.with) > r2(*r.without)) larger.push_back(r.dataset);
    parts.push_back(
        fmt::format("{} with vs {} without on {}", pct(*r.with), pct(*r.without), r.dataset));
  }
  if (compared) {
    const std::string verdict = larger.size() == compared ? "on every dataset"
                                : larger.empty()          ? "on no dataset"
                                                 : "on " + how_many(larger, compared, "dataset");
    add(out, "image_encoder",
        fmt::format("Runs with a trainable image encoder have a larger mean Dice change than runs "
                    "without it {}: {}.",
                    verdict, join_and(parts)));
  }
  for (const auto& s : in.image_encoder_by_prompt) {
    if (s.prompt_type != kAllPrompts || !s.pairs) continue;
    add(out, "image_encoder_pairs",
        fmt::format("Paired with the other trainable modules unchanged, adding the image encoder "
                    "gave higher Dice "
                    "in {} of {} pairs and lower in {} (mean Dice difference {}).",
                    s.higher, s.pairs, s.lower, met(s.mean_difference)));
  }
}

// For each dataset, the prompt type with the highest (or lowest) printed value; datasets are
// grouped by that prompt type.
std::string extreme_by_dataset(const std::vector<PromptGrid>& grid, bool highest, bool percent) {
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  for (const auto& g : grid) {
    const std::string* pick = nullptr;
    double value = 0;
    for (const auto& [prompt, v] : g.values) {
      if (!v) continue;
      const double x = percent ? r2(*v) : r4(*v);
      if (!pick || (highest ? x > value : x < value)) {
        pick = &prompt;
        value = x;
      }
    }
    if (!pick) continue;
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const auto& p) { return p.first == *pick; });
    if (it == groups.end()) it = groups.insert(groups.end(), {*pick, {}});
    it->second.push_back(fmt::format("{} ({})", g.dataset, percent ? pct(value) : met(value)));
  }
  std::string out;
  for (std::size_t i = 0; i < groups.size(); ++i) {
    out += fmt::format("{}{} prompts on {}",
                       i == 0                   ? ""
                       : i + 1 == groups.size() ? ", and with "
                                                : ", with ",
                       groups[i].first, join_and(groups[i].second));
  }
  return out;
}

void prompts(const InsightTables& in, std::vector<Conclusion>& out) {
  if (in.prompt_types.size() < 2 || in.prompt_dice.empty()) return;
  add(out, "prompt",
      fmt::format("After training, mean Dice is highest with {}. It is lowest with {}.",
                  extreme_by_dataset(in.prompt_dice, true, false),
                  extreme_by_dataset(in.prompt_dice, false, false)));

  // Where the gains over the baseline are: pooled mean change per prompt type.
  std::vector<const WinLoss*> ranked;
  for (const auto& w : in.by_prompt) ranked.push_back(&w);
  std::stable_sort(ranked.begin(), ranked.end(), [](const WinLoss* a, const WinLoss* b) {
    return r2(a->mean_change) > r2(b->mean_change);
  });
  const WinLoss& top = *ranked[0];
  const WinLoss& second = *ranked[1];
  std::vector<std::string> others;
  for (std::size_t i = 1; i < ranked.size(); ++i) {
    others.push_back(fmt::format("{} for {}", pct(ranked[i]->mean_change), ranked[i]->group));
  }
  std::size_t top_on = 0;
  for (const auto& g : in.prompt_change) {
    const auto& v = g.values.at(top.group);
    bool largest = v.has_value();
    for (const auto& [prompt, w] : g.values) {
      if (v && w && prompt != top.group && r2(*w) >= r2(*v)) largest = false;
    }
    top_on += largest;
  }
  std::string text;
  if (r2(top.mean_change) <= 0) {
    text = fmt::format(
        "No prompt type gained Dice on average: the largest mean change is {} for {} prompts.",
        pct(top.mean_change), top.group);
  } else if (r2(top.mean_change) == r2(second.mean_change)) {
    text = fmt::format("The mean Dice gain is largest, and tied, for {} and {} prompts ({}).",
                       top.group, second.group, pct(top.mean_change));
  } else {
    // "Concentrate" only when the leader's mean gain is at least twice the runner-up's.
    const bool concentrated =
        r2(second.mean_change) <= 0 || r2(top.mean_change) >= 2 * r2(second.mean_change);
    text = fmt::format("Gains from training {} {} prompts: their mean Dice change is {} versus {}",
                       concentrated ? "concentrate on" : "are largest for", top.group,
                       pct(top.mean_change), join_and(others));
    text += fmt::format("; {} prompts have the largest mean gain on {}.", top.group,
                        top_on == in.prompt_change.size()
                            ? "every dataset"
                            : fmt::format("{} of {} datasets", top_on, in.prompt_change.size()));
  }
  add(out, "prompt_gain", text);
}

void recipes(const InsightTables& in, std::vector<Conclusion>& out) {
  const auto& rank = in.recipe_ranking;
  if (rank.empty()) return;
  const RecipeSummary& top = rank[0];
  std::string text;
  if (rank.size() > 1 && r4(rank[1].mean_dice) == r4(top.mean_dice)) {
    text =
        fmt::format("{} and {} tie for first by mean Dice over all datasets and prompt types ({}).",
                    top.recipe, rank[1].recipe, met(top.mean_dice));
  } else {
    text = fmt::format(
        "{} ranks first by mean Dice over all datasets and prompt types ({}; mean Dice change {}; "
        "{} runs)",
        top.recipe, met(top.mean_dice), pct(top.mean_change), top.runs);
    text += rank.size() > 1
                ? fmt::format(", ahead of {} ({}).", rank[1].recipe, met(rank[1].mean_dice))
                : ".";
  }
  const RecipeSummary* by_change = &rank[0];
  for (const auto& r : rank) {
    if (r2(r.mean_change) > r2(by_change->mean_change)) by_change = &r;
  }
  if (by_change == &rank[0]) {
    text += " It also has the largest mean Dice change.";
  } else {
    text += fmt::format(" By mean Dice change, {} ranks first ({}).", by_change->recipe,
                        pct(by_change->mean_change));
  }
  std::size_t columns = in.performance.columns.size(), best_in = 0;
  if (const auto it = in.performance.cells.find(top.recipe); it != in.performance.cells.end()) {
    for (const auto& [column, cell] : it->second) best_in += cell.best;
  }
  if (columns) {
    text += fmt::format(
        " It is the best trained recipe in {} of {} dataset · prompt columns of the performance "
        "table.",
        best_in, columns);
  }
  std::set<std::size_t> counts;
  for (const auto& r : rank) counts.insert(r.runs);
  if (counts.size() > 1) {
    text +=
        " Recipes have different run counts, so these pooled means weight datasets and prompt "
        "types unevenly.";
  }
  add(out, "recipe", text);
}

void best_runs(const InsightTables& in, std::vector<Conclusion>& out) {
  if (in.best_per_dataset.empty()) return;
  std::vector<std::string> parts;
  std::set<std::string> prompt_set, recipe_set;
  for (const auto& b : in.best_per_dataset) {
    parts.push_back(fmt::format("{} on {} ({}, {} prompt, Dice {}, {} vs baseline)", b.name,
                                b.dataset, b.recipe, b.prompt_type, met(b.dice),
                                pct(b.dice_change)));
    prompt_set.insert(b.prompt_type);
    recipe_set.insert(b.recipe);
  }
  std::string text = fmt::format("Highest-Dice run per dataset: {}.", join_and(parts));
  if (in.best_per_dataset.size() > 1) {
    text += prompt_set.size() == 1
                ? fmt::format(" All of them use {} prompts.", *prompt_set.begin())
                : fmt::format(
                      " They use {} different prompt types, so no single prompt type gives the "
                      "best run "
                      "everywhere.",
                      prompt_set.size());
  }
  add(out, "best", text);
}

// Runs trained for different epoch budgets are pooled in every table; say so.
void epochs(const InsightTables& in, std::vector<Conclusion>& out) {
  std::map<int, std::vector<std::string>> by_epochs;
  for (const auto& r : in.comparison) by_epochs[r.max_epochs].push_back(r.name);
  if (by_epochs.size() < 2) return;
  std::vector<std::string> parts;
  for (const auto& [epochs, names] : by_epochs) {
    std::string part = fmt::format("{} with max_epochs {}", names.size(), epochs);
    if (names.size() <= 3) part += fmt::format(" ({})", join_and(names));
    parts.push_back(part);
  }
  add(out, "epochs",
      fmt::format(
          "Trained runs have different epoch budgets ({}); the tables pool them, so part of a "
          "difference may come from training length rather than the recipe.",
          join_and(parts)));
}

void caveats(const InsightTables& in, std::vector<Conclusion>& out) {
  if (in.max_runs_per_cell == 1) {
    add(out, "seeds",
        "Every dataset × prompt type × recipe cell has a single run (one seed), so none of the "
        "differences above "
        "can be separated from run-to-run noise; they are observations, not tested effects.");
  } else if (in.max_runs_per_cell > 1) {
    add(out, "seeds",
        fmt::format(
            "Some dataset × prompt type × recipe cells have up to {} runs; tables average them, "
            "but no "
            "estimate of run-to-run noise is made, so small differences are not tested effects.",
            in.max_runs_per_cell));
  }
  add(out, "mae_units",
      "MAE is reported in the source's units; the export does not state its scale (unknown), so "
      "only its relative "
      "changes are comparable across datasets. MAE_reduction_% keeps the source tool's column name "
      "but is the "
      "relative change: negative means lower (better) MAE.");
}

}  // namespace

std::vector<std::string> unbacked_numbers(const std::string& text,
                                          const std::vector<Table>& tables) {
  std::set<std::string> printed;
  auto add_numbers = [&](const std::string& s) {
    for (std::size_t i = 0; i < s.size();) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
      printed.insert(s.substr(i, j - i));
      i = j;
    }
  };
  for (const auto& t : tables) {
    for (const auto& row : t.rows) {
      for (std::size_t c = 0; c < row.size(); ++c)
        add_numbers(format_cell(row[c], t.columns[c].format));
    }
  }
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < text.size();) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    // Skip digits inside identifiers such as "cholecseg8k" or "__148297".
    const bool in_word =
        i > 0 && (std::isalpha(static_cast<unsigned char>(text[i - 1])) || text[i - 1] == '_');
    std::size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.'))
      ++j;
    std::string number = text.substr(i, j - i);
    while (!number.empty() && number.back() == '.') number.pop_back();  // sentence end
    if (!in_word && number.find('.') != std::string::npos && !printed.count(number))
      missing.push_back(number);
    i = j;
  }
  return missing;
}

std::vector<Conclusion> write_conclusions(const InsightTables& in,
                                          const std::vector<Table>& tables) {
  std::vector<Conclusion> all;
  scope(in, all);
  if (!in.comparison.empty()) {
    overall(in, all);
    wins(in, all);
    memory(in, all);
    image_encoder(in, all);
    prompts(in, all);
    recipes(in, all);
    best_runs(in, all);
    epochs(in, all);
  }
  caveats(in, all);

  std::vector<Conclusion> checked;
  for (auto& c : all) {
    const auto missing = unbacked_numbers(c.text, tables);
    if (!missing.empty()) {
      spdlog::warn("insights: dropped the '{}' conclusion; it quotes {} which no table prints",
                   c.topic, fmt::join(missing, ", "));
      continue;
    }
    checked.push_back(std::move(c));
  }
  return checked;
}

}  // namespace iris::report
