#include "cli/cmd_report.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <memory>

#include "core/error.h"
#include "report/insights_writer.h"
#include "report/training_report.h"
#include "track/run_store.h"
#include "track/wandb_csv.h"

namespace iris::cli {

namespace {

struct InsightsOptions {
  std::string csv;
  std::string runs;
  std::string out;
  std::vector<std::string> columns;
  bool no_plots = false;
};

int run_insights(const InsightsOptions& o) {
  track::RunTable runs;
  if (!o.runs.empty()) {
    if (!std::filesystem::is_directory(o.runs)) {
      throw InputError(file_message(o.runs, "no such runs folder"));
    }
    const track::RunScan scan = track::RunStore(o.runs).scan();
    for (const auto& p : scan.problems) spdlog::warn("{}: skipped: {}", p.folder, p.message);
    // Failed, running and crashed runs have no final numbers; a sweep with a failed run still
    // reports on the others.
    std::vector<track::RunRecord> finished;
    for (const auto& r : scan.runs) {
      if (r.state == "failed" || r.state == "running" || r.state == "crashed") {
        spdlog::warn("{}: skipped: the run is {}", r.folder, r.state);
      } else {
        finished.push_back(r);
      }
    }
    runs = track::to_run_table(finished, o.runs);
  } else {
    runs = track::read_wandb_csv(o.csv, track::parse_column_overrides(o.columns));
  }
  const report::InsightsReport rep = report::build_insights_report(runs);
  for (const auto& e : rep.insights.excluded) {
    if (e.line > 0) {
      spdlog::warn("{}: line {}, run '{}' excluded: {}", runs.source, e.line, e.name, e.reason);
    } else {
      spdlog::warn("{}: run '{}' excluded: {}", runs.source, e.name, e.reason);
    }
  }
  const auto files = report::write_insights_report(rep, o.out, {!o.no_plots});
  std::cout << fmt::format("wrote {}\nwrote {}\nwrote {}\n", files.markdown.string(),
                           files.html.string(), files.json.string());
  for (const auto& p : files.plots) std::cout << "wrote " << p.string() << "\n";
  if (files.plots.empty() && !files.plot_note.empty()) spdlog::info("{}", files.plot_note);
  return 0;
}

}  // namespace

std::function<int()> setup_report(CLI::App& app, const GlobalOptions&) {
  app.require_subcommand(1);
  auto options = std::make_shared<InsightsOptions>();
  CLI::App* insights = app.add_subcommand(
      "insights",
      "tables, conclusions and plots of a fine-tuning study against its epoch-0 baselines");
  auto* csv = insights->add_option("--csv", options->csv, "W&B CSV export of the runs");
  auto* runs = insights->add_option("--runs", options->runs, "runs folder (see `iris runs list`)");
  csv->excludes(runs);
  insights->add_option("--out", options->out, "folder for insights.md/.html/.json and the plots")
      ->required();
  insights->add_option(
      "--column", options->columns,
      "map a role to a CSV column, e.g. dice=eval/Dice (roles: name, dice, mae, miou, prompt_type, "
      "trainable_modules, dataset, max_epochs, recipe)");
  insights->add_flag("--no-plots", options->no_plots, "write the report without PNG plots");
  struct TrainingOptions {
    std::string run_dir;
    std::string out;
    bool no_plots = false;
  };
  auto training_options = std::make_shared<TrainingOptions>();
  CLI::App* training = app.add_subcommand(
      "training", "the training report of one run folder: markdown, self-contained HTML, plots");
  training->add_option("RUN_DIR", training_options->run_dir, "run folder written by `iris train`")
      ->required();
  training->add_option("--out", training_options->out, "output folder (default RUN_DIR/report)");
  training->add_flag("--no-plots", training_options->no_plots,
                     "write the report without PNG plots");
  return [options, insights, training_options, training]() -> int {
    if (training->parsed()) {
      const auto files = report::write_training_report(
          training_options->run_dir, {!training_options->no_plots, training_options->out});
      std::cout << fmt::format("wrote {}\nwrote {}\n", files.markdown.string(),
                               files.html.string());
      for (const auto& p : files.plots) std::cout << "wrote " << p.string() << "\n";
      if (files.plots.empty() && !files.plot_note.empty()) spdlog::info("{}", files.plot_note);
      return 0;
    }
    if (insights->parsed()) {
      if (options->csv.empty() && options->runs.empty()) {
        throw UsageError("report insights: give --csv FILE (a W&B export) or --runs DIR");
      }
      return run_insights(*options);
    }
    throw UsageError("report: expected a report kind: insights or training");
  };
}

}  // namespace iris::cli
