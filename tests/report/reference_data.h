// The study's reference insights report (../shared/reference/training_insights_report.md) as test
// data: its Markdown tables, and a W&B-layout CSV rebuilt from its "Trained Models vs Baseline"
// table.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace iris::test {

inline std::filesystem::path reference_report_path() {
  return std::filesystem::path(IRIS_SOURCE_DIR) / ".." / "shared" / "reference" /
         "training_insights_report.md";
}

inline std::optional<std::string> read_reference_report() {
  std::ifstream in(reference_report_path());
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

#define IRIS_REQUIRE_REFERENCE(text)                                                           \
  const auto text##_opt = ::iris::test::read_reference_report();                               \
  if (!text##_opt) {                                                                           \
    GTEST_SKIP()                                                                               \
        << "shared material not found at " << ::iris::test::reference_report_path()            \
        << " (the ../shared folder beside the checkout); the reference comparison is skipped"; \
  }                                                                                            \
  const std::string& text = *text##_opt

struct MdTable {
  std::string heading;  // the "## ..." line above it, without "## "
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;

  std::size_t column(const std::string& name) const {
    const auto it = std::find(columns.begin(), columns.end(), name);
    if (it == columns.end()) throw std::out_of_range("no column " + name + " in " + heading);
    return static_cast<std::size_t>(it - columns.begin());
  }
};

inline std::string trim_cell(const std::string& s) {
  const auto b = s.find_first_not_of(' ');
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(' ') - b + 1);
}

// Pipe tables of a Markdown document, each with the heading it sits under.
inline std::vector<MdTable> parse_markdown_tables(const std::string& text) {
  std::vector<MdTable> tables;
  std::istringstream in(text);
  std::string line, heading;
  MdTable* current = nullptr;
  int body_line = 0;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) heading = line.substr(3);
    if (line.empty() || line[0] != '|') {
      current = nullptr;
      continue;
    }
    std::vector<std::string> cells;
    std::string cell;
    for (std::size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|' && line[i - 1] != '\\') {
        cells.push_back(trim_cell(cell));
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    if (!current) {
      tables.push_back({heading, cells, {}});
      current = &tables.back();
      body_line = 0;
    } else if (++body_line > 1) {  // skip the |---| line
      current->rows.push_back(cells);
    }
  }
  return tables;
}

inline const MdTable& table_under(const std::vector<MdTable>& tables,
                                  const std::string& heading_prefix) {
  for (const auto& t : tables) {
    if (t.heading.rfind(heading_prefix, 0) == 0) return t;
  }
  throw std::out_of_range("no table under " + heading_prefix);
}

// One run of the rebuilt export.
struct CsvRun {
  std::string name, dataset, prompt, recipe;
  double dice = 0, miou = 0, mae = 0;
  int epochs = 30;
};

inline std::vector<std::string> recipe_modules(const std::string& recipe) {
  std::vector<std::string> modules;
  std::stringstream ss(recipe);
  std::string token;
  std::map<std::string, std::vector<std::string>> map = {
      {"mem", {"memory_encoder", "memory_attention"}},
      {"md", {"mask_decoder"}},
      {"pe", {"prompt_encoder"}},
      {"ie", {"image_encoder"}}};
  while (std::getline(ss, token, '+')) {
    for (const auto& m : map.at(token)) modules.push_back(m);
  }
  return modules;
}

inline std::string csv_field(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

inline std::string export_csv(const std::vector<CsvRun>& runs) {
  std::string out =
      "\"Name\",\"eval/Dice\",\"eval/MAE\",\"eval/"
      "mIoU\",\"module.model.prompt_type\",\"module.model.trainable_modules\","
      "\"data_module.data.name\",\"trainer.max_epochs\"\n";
  auto num = [](double v) {  // shortest text that reads back as the same double
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, res.ptr);
  };
  for (const auto& r : runs) {
    std::string modules = "[";
    const auto list = r.epochs == 0 ? recipe_modules("mem") : recipe_modules(r.recipe);
    for (std::size_t i = 0; i < list.size(); ++i) modules += (i ? ",\"" : "\"") + list[i] + "\"";
    modules += "]";
    out += csv_field(r.name) + "," + csv_field(num(r.dice)) + "," + csv_field(num(r.mae)) + "," +
           csv_field(num(r.miou)) + "," + csv_field(r.prompt) + "," + csv_field(modules) + "," +
           csv_field(r.dataset) + "," + csv_field(std::to_string(r.epochs)) + "\n";
  }
  return out;
}

// The printed table rounds metrics to 4 decimals and changes to 2. Inputs consistent with every
// printed number of a (dataset, prompt) group are closer to the unrounded originals than the
// printed metrics alone: pick the baseline inside its rounding interval that lets the most runs
// reproduce their printed change, then each trained value implied by baseline × (1 + change/100),
// kept inside its own rounding interval.
struct PrintedRun {
  double value, change;  // printed metric and printed change (%)
};
inline double consistent_baseline(double printed, const std::vector<PrintedRun>& runs) {
  constexpr double kMetricHalf = 0.5e-4, kChangeHalf = 0.5e-2;
  double best = printed;
  int best_fit = -1;
  constexpr int kSteps = 2000;
  for (int i = 0; i <= kSteps; ++i) {
    const double b = printed - kMetricHalf + 2 * kMetricHalf * i / kSteps;
    int fit = 0;
    for (const auto& r : runs) {
      // Is there a trained value within its interval whose change lies within the printed one's?
      const double lo = std::max(r.value - kMetricHalf, b * (1 + (r.change - kChangeHalf) / 100));
      const double hi = std::min(r.value + kMetricHalf, b * (1 + (r.change + kChangeHalf) / 100));
      fit += lo <= hi;
    }
    if (fit > best_fit || (fit == best_fit && std::abs(b - printed) < std::abs(best - printed))) {
      best = b;
      best_fit = fit;
    }
  }
  return best;
}
inline double refine(double printed, double baseline, double change_pct) {
  const double implied = baseline * (1 + change_pct / 100);
  return std::clamp(implied, printed - 0.5e-4, printed + 0.5e-4);
}

// The runs of the reference study: one baseline (max_epochs 0, named like the study's
// "<ds>_<prompt>_mem__148297") per (dataset, prompt), and the 63 trained runs. Best runs keep the
// names of the reference's "Best Configuration" table; the cholecseg8k mask "mem" run shares its
// name with its baseline, as in the real export.
inline std::vector<CsvRun> reference_runs(const std::vector<MdTable>& tables) {
  const MdTable& cmp = table_under(tables, "Trained Models vs Baseline");
  const MdTable& best = table_under(tables, "Insight 5");
  std::map<std::string, std::string> best_names;  // "ds/recipe/dice" -> name
  for (const auto& row : best.rows) best_names[row[0] + "/" + row[2] + "/" + row[3]] = row[1];
  std::vector<CsvRun> runs;
  std::map<std::string, CsvRun> baselines;
  int id = 150000;
  auto col = [&](const std::vector<std::string>& row, const char* name) {
    return std::stod(row[cmp.column(name)]);
  };
  // Baselines consistent with all printed changes of their group, per metric.
  struct Metric {
    const char *value, *base, *change;
  };
  const Metric metrics[] = {{"eval/Dice", "Dice_baseline", "Dice_improvement_%"},
                            {"eval/mIoU", "mIoU_baseline", "mIoU_improvement_%"},
                            {"eval/MAE", "MAE_baseline", "MAE_reduction_%"}};
  std::map<std::string, std::array<double, 3>> base_values;
  {
    std::map<std::string, std::array<std::vector<PrintedRun>, 3>> printed;
    std::map<std::string, std::array<double, 3>> printed_base;
    for (const auto& row : cmp.rows) {
      const std::string key = row[0] + "_" + row[1];
      for (int m = 0; m < 3; ++m) {
        printed[key][m].push_back({col(row, metrics[m].value), col(row, metrics[m].change)});
        printed_base[key][m] = col(row, metrics[m].base);
      }
    }
    for (const auto& [key, lists] : printed) {
      for (int m = 0; m < 3; ++m)
        base_values[key][m] = consistent_baseline(printed_base[key][m], lists[m]);
    }
  }
  for (const auto& row : cmp.rows) {
    CsvRun run;
    run.dataset = row[0];
    run.prompt = row[1];
    run.recipe = row[2];
    const std::string key = run.dataset + "_" + run.prompt;
    const auto best_it =
        best_names.find(run.dataset + "/" + run.recipe + "/" + row[cmp.column("eval/Dice")]);
    run.name = best_it != best_names.end() ? best_it->second
               : (key == "cholecseg8k_mask" && run.recipe == "mem")
                   ? key + "_mem__148297"
                   : key + "_" + run.recipe + "__" + std::to_string(id++);
    const auto& b = base_values[key];
    run.dice = refine(col(row, metrics[0].value), b[0], col(row, metrics[0].change));
    run.miou = refine(col(row, metrics[1].value), b[1], col(row, metrics[1].change));
    run.mae = refine(col(row, metrics[2].value), b[2], col(row, metrics[2].change));
    runs.push_back(run);
    if (!baselines.count(key))
      baselines[key] = {key + "_mem__148297", run.dataset, run.prompt, "mem", b[0], b[1], b[2], 0};
  }
  // Interleave the (dataset, prompt) groups round-robin, keeping each group's order, so the
  // report has to regroup them; the baselines come last.
  std::vector<std::string> keys;
  std::map<std::string, std::vector<CsvRun>> groups;
  for (const auto& r : runs) {
    const std::string key = r.dataset + "_" + r.prompt;
    if (!groups.count(key)) keys.push_back(key);
    groups[key].push_back(r);
  }
  std::reverse(keys.begin(), keys.end());
  std::vector<CsvRun> out;
  for (std::size_t i = 0; out.size() < runs.size(); ++i) {
    for (const auto& key : keys) {
      if (i < groups[key].size()) out.push_back(groups[key][i]);
    }
  }
  for (auto it = baselines.rbegin(); it != baselines.rend(); ++it) out.push_back(it->second);
  return out;
}

}  // namespace iris::test
