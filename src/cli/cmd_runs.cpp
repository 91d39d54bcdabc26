#include "cli/cmd_runs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "track/run_store.h"
#include "track/wandb_csv.h"

namespace iris::cli {
namespace {

namespace fs = std::filesystem;
using track::RunRecord;

constexpr const char* kDefaultRunsRoot = "runs";

struct RunsOptions {
  std::string root = kDefaultRunsRoot;
  track::RunFilter filter;
  bool reindex = false;
  std::vector<std::string> names;
  std::string out;
  std::string file;
  std::vector<std::string> columns;
};

// Left-aligned text columns separated by two spaces.
std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}  ", row[i], width[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string runtime_text(const std::optional<double>& seconds) {
  if (!seconds) return "-";
  const auto s = static_cast<long long>(std::llround(*seconds));
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string budget_text(const RunRecord& r) {
  std::string text = "-";
  if (r.has_max_epochs) {
    text = r.max_epochs == 0 && r.is_baseline ? "0" : fmt::format("{} ep", r.max_epochs);
  } else if (r.max_steps) {
    text = fmt::format("{} steps", *r.max_steps);
  }
  return r.is_baseline ? text + " (baseline)" : text;
}

std::string number_text(double v) {
  return fmt::format("{:.6g}", v);
}

std::string metric_text(const RunRecord& r, const char* key) {
  const auto v = r.metric(key);
  return v ? fmt::format("{:.4f}", *v) : "-";
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

void warn_problems(const track::RunScan& scan) {
  for (const auto& p : scan.problems) spdlog::warn("{}: skipped: {}", p.folder, p.message);
}

int run_list(const RunsOptions& o) {
  const track::RunStore store(o.root);
  const track::RunScan scan = store.scan(o.reindex);
  warn_problems(scan);
  std::vector<const RunRecord*> shown;
  for (const RunRecord& r : scan.runs) {
    if (o.filter.matches(r)) shown.push_back(&r);
  }
  const bool names_differ = std::any_of(shown.begin(), shown.end(),
                                        [](const RunRecord* r) { return r->name != r->folder; });
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"RUN"};
  if (names_differ) header.push_back("NAME");
  for (const char* h : {"STATE", "CREATED", "RUNTIME", "DATASET", "PROMPT", "RECIPE", "BUDGET",
                        "Dice", "mIoU", "MAE"}) {
    header.push_back(h);
  }
  rows.push_back(header);
  for (const RunRecord* r : shown) {
    std::vector<std::string> row = {r->folder};
    if (names_differ) row.push_back(r->name);
    const std::vector<std::string> rest = {r->imported ? r->state + " (imported)" : r->state,
                                           or_dash(r->created),
                                           runtime_text(r->runtime),
                                           or_dash(r->dataset),
                                           or_dash(r->prompt_type),
                                           or_dash(r->recipe),
                                           budget_text(*r),
                                           metric_text(*r, track::kDice),
                                           metric_text(*r, track::kMiou),
                                           metric_text(*r, track::kMae)};
    row.insert(row.end(), rest.begin(), rest.end());
    rows.push_back(row);
  }
  if (!shown.empty()) std::cout << format_table(rows);
  std::string index = "no index (built without SQLite)";
  if (!fs::is_directory(o.root)) {
    index = "the folder does not exist yet";
  } else if (scan.indexed) {
    index = scan.db_written ? fmt::format("runs.db updated ({} folders read)", scan.reread)
                            : "runs.db up to date";
  }
  std::cout << fmt::format("{} of {} runs in {}; {}\n", shown.size(), scan.runs.size(), o.root,
                           index);
  return 0;
}

int run_show(const RunsOptions& o) {
  const track::RunStore store(o.root);
  const RunRecord r = store.find(o.names.front());
  const fs::path folder = fs::path(o.root) / r.folder;
  std::vector<std::vector<std::string>> head = {
      {"run", r.folder},
      {"name", r.name},
      {"folder", folder.string()},
      {"state", r.state + (r.imported ? " (imported)" : "")},
      {"created", or_dash(r.created)},
      {"runtime", runtime_text(r.runtime)},
      {"dataset", or_dash(r.dataset)},
      {"prompt type", or_dash(r.prompt_type)},
      {"recipe", or_dash(r.recipe)},
      {"trainable modules",
       r.trainable_modules.empty() ? "-" : fmt::format("{}", fmt::join(r.trainable_modules, ", "))},
      {"budget", budget_text(r)}};
  std::cout << format_table(head);
  std::cout << "\nconfig:\n";
  std::vector<std::vector<std::string>> config;
  for (const auto& [k, v] : r.config) config.push_back({"  " + k, v});
  std::cout << (config.empty() ? "  (none)\n" : format_table(config));
  std::cout << "\nsummary:\n";
  std::vector<std::vector<std::string>> summary;
  for (const auto& [metric, key] :
       {std::pair{track::kDice, "eval/Dice"}, std::pair{track::kMiou, "eval/mIoU"},
        std::pair{track::kMae, "eval/MAE"}}) {
    if (const auto v = r.metric(metric))
      summary.push_back({"  " + std::string(key), fmt::format("{}", *v)});
  }
  for (const auto& [k, v] : r.summary) summary.push_back({"  " + k, fmt::format("{}", v)});
  std::cout << (summary.empty() ? "  (none)\n" : format_table(summary));
  std::cout << "\nlast metrics (metrics.jsonl):\n";
  std::vector<std::vector<std::string>> last;
  for (const auto& [k, m] : track::last_metrics(folder)) {
    last.push_back(
        {"  " + k, number_text(m.value), m.step >= 0 ? fmt::format("step {}", m.step) : ""});
  }
  std::cout << (last.empty() ? "  (none)\n" : format_table(last));
  return 0;
}

int run_compare(const RunsOptions& o) {
  const track::RunStore store(o.root);
  std::vector<RunRecord> runs;
  std::vector<std::map<std::string, track::LastMetric>> lasts;
  for (const auto& name : o.names) {
    runs.push_back(store.find(name));
    lasts.push_back(track::last_metrics(fs::path(o.root) / runs.back().folder));
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {""};
  for (const auto& r : runs) header.push_back(r.folder);
  rows.push_back(header);
  auto add = [&](const std::string& label, auto&& cell) {
    std::vector<std::string> row = {label};
    for (std::size_t i = 0; i < runs.size(); ++i) row.push_back(cell(i));
    rows.push_back(row);
  };
  add("state", [&](std::size_t i) { return runs[i].state; });
  add("dataset", [&](std::size_t i) { return or_dash(runs[i].dataset); });
  add("prompt type", [&](std::size_t i) { return or_dash(runs[i].prompt_type); });
  add("recipe", [&](std::size_t i) { return or_dash(runs[i].recipe); });
  add("budget", [&](std::size_t i) { return budget_text(runs[i]); });
  add("runtime", [&](std::size_t i) { return runtime_text(runs[i].runtime); });
  for (const auto& [metric, key] :
       {std::pair{track::kDice, "eval/Dice"}, std::pair{track::kMiou, "eval/mIoU"},
        std::pair{track::kMae, "eval/MAE"}}) {
    add(key, [&, metric = metric](std::size_t i) { return metric_text(runs[i], metric); });
  }
  std::set<std::string> summary_keys, last_keys, config_keys;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    for (const auto& [k, v] : runs[i].summary) summary_keys.insert(k);
    for (const auto& [k, v] : lasts[i]) last_keys.insert(k);
    for (const auto& [k, v] : runs[i].config) config_keys.insert(k);
  }
  for (const auto& key : summary_keys) {
    add(key, [&](std::size_t i) {
      const auto it = runs[i].summary.find(key);
      return it == runs[i].summary.end() ? std::string("-") : number_text(it->second);
    });
  }
  for (const auto& key : last_keys) {
    add("last " + key, [&](std::size_t i) {
      const auto it = lasts[i].find(key);
      return it == lasts[i].end() ? std::string("-") : number_text(it->second.value);
    });
  }
  // Config keys only where the runs differ: what sets them apart.
  for (const auto& key : config_keys) {
    std::set<std::string> values;
    for (const auto& r : runs) {
      const auto it = r.config.find(key);
      values.insert(it == r.config.end() ? "-" : it->second);
    }
    if (values.size() < 2) continue;
    add("config " + key, [&](std::size_t i) {
      const auto it = runs[i].config.find(key);
      return it == runs[i].config.end() ? std::string("-") : it->second;
    });
  }
  std::cout << format_table(rows);
  return 0;
}

int run_export(const RunsOptions& o) {
  const track::RunStore store(o.root);
  const track::RunScan scan = store.scan();
  warn_problems(scan);
  std::vector<RunRecord> runs;
  for (const RunRecord& r : scan.runs) {
    if (o.filter.matches(r)) runs.push_back(r);
  }
  track::write_wandb_csv(o.out, track::to_run_table(std::move(runs), o.root));
  std::cout << fmt::format("wrote {} ({} runs)\n", o.out,
                           std::count_if(scan.runs.begin(), scan.runs.end(),
                                         [&](const RunRecord& r) { return o.filter.matches(r); }));
  return 0;
}

int run_import(const RunsOptions& o) {
  const auto overrides = track::parse_column_overrides(o.columns);
  const track::RunTable table =
      track::read_wandb_csv(o.file, overrides, track::RoleCheck::kNameOnly);
  const track::RunStore store(o.root);
  const auto result = store.import_runs(table, o.file);
  store.scan();  // index the new folders now
  std::cout << fmt::format("imported {} runs from {} into {}", result.created.size(), o.file,
                           o.root);
  if (!result.skipped.empty()) {
    std::cout << fmt::format("; {} already imported", result.skipped.size());
  }
  std::cout << "\n";
  return 0;
}

void add_root(CLI::App* sub, RunsOptions& o) {
  sub->add_option("--runs", o.root, "runs folder")->capture_default_str();
}

void add_filters(CLI::App* sub, RunsOptions& o) {
  sub->add_option("--dataset", o.filter.dataset, "only runs on this dataset");
  sub->add_option("--prompt", o.filter.prompt_type, "only runs with this prompt type");
  sub->add_option("--recipe", o.filter.recipe, "only runs of this recipe (e.g. md+pe)");
  sub->add_option("--state", o.filter.state, "finished | running | crashed | failed");
}

}  // namespace

std::function<int()> setup_runs(CLI::App& app, const GlobalOptions&) {
  app.require_subcommand(1);
  auto o = std::make_shared<RunsOptions>();
  CLI::App* list = app.add_subcommand("list", "a table of the runs, with filters");
  add_root(list, *o);
  add_filters(list, *o);
  list->add_flag("--reindex", o->reindex, "rebuild runs.db from the run folders");

  CLI::App* show = app.add_subcommand("show", "config, summary and last metrics of one run");
  show->add_option("name", o->names, "run folder or run name")->required()->expected(1);
  add_root(show, *o);

  CLI::App* compare = app.add_subcommand("compare", "runs side by side");
  compare->add_option("names", o->names, "run folders or run names")->required()->expected(1, -1);
  add_root(compare, *o);

  CLI::App* exp = app.add_subcommand("export", "the runs as a W&B runs-table CSV");
  exp->add_option("--out", o->out, "CSV file to write")->required();
  add_root(exp, *o);
  add_filters(exp, *o);

  CLI::App* imp = app.add_subcommand("import", "run folders from a W&B runs-table CSV");
  imp->add_option("file", o->file, "CSV export")->required();
  add_root(imp, *o);
  imp->add_option("--column", o->columns,
                  "map a role to a CSV column, e.g. dice=eval/Dice (roles: name, dice, mae, miou, "
                  "prompt_type, trainable_modules, dataset, max_epochs, recipe)");

  return [o, list, show, compare, exp, imp]() -> int {
    if (list->parsed()) return run_list(*o);
    if (show->parsed()) return run_show(*o);
    if (compare->parsed()) return run_compare(*o);
    if (exp->parsed()) return run_export(*o);
    if (imp->parsed()) return run_import(*o);
    throw UsageError("runs: expected list, show, compare, export or import");
  };
}

}  // namespace iris::cli
