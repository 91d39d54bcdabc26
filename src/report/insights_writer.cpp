#include "report/insights_writer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <map>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "report/plot.h"

namespace iris::report {

namespace {

struct Plot {
  std::string file;
  std::string caption;
  std::string png;
};

// Mean Dice change per (recipe, dataset · prompt) cell.
HeatMap change_heatmap(const InsightTables& in) {
  HeatMap map;
  map.title = "Dice change vs baseline (%) by recipe and dataset / prompt type";
  map.value_label = "Dice change vs baseline (%)";
  const auto& perf = in.performance;
  for (const auto& row : perf.rows) {
    if (row != "baseline") map.row_labels.push_back(row);
  }
  for (const auto& [ds, prompt] : perf.columns) map.column_labels.push_back(ds + "\n" + prompt);
  for (const auto& recipe : map.row_labels) {
    std::vector<std::optional<double>> values;
    for (const auto& column : perf.columns) {
      double sum = 0;
      int n = 0;
      for (const auto& r : in.comparison) {
        if (r.recipe == recipe && r.dataset == column.first && r.prompt_type == column.second) {
          sum += r.dice_change;
          ++n;
        }
      }
      values.push_back(n ? std::optional(sum / n) : std::nullopt);
    }
    map.values.push_back(std::move(values));
  }
  return map;
}

BarChart recipe_bars(const InsightTables& in) {
  BarChart chart{"Mean Dice change vs baseline by recipe", "mean Dice change (%)"};
  for (const auto& r : in.recipe_ranking) chart.categories.push_back(r.recipe);
  chart.series = in.datasets;
  for (const auto& ds : in.datasets) {
    std::vector<std::optional<double>> values;
    for (const auto& recipe : chart.categories) {
      double sum = 0;
      int n = 0;
      for (const auto& r : in.comparison) {
        if (r.dataset == ds && r.recipe == recipe) {
          sum += r.dice_change;
          ++n;
        }
      }
      values.push_back(n ? std::optional(sum / n) : std::nullopt);
    }
    chart.values.push_back(std::move(values));
  }
  return chart;
}

BarChart prompt_bars(const InsightTables& in) {
  BarChart chart{"Mean Dice change vs baseline by prompt type", "mean Dice change (%)"};
  chart.categories = in.prompt_types;
  chart.series = in.datasets;
  for (const auto& g : in.prompt_change) {
    std::vector<std::optional<double>> values;
    for (const auto& p : in.prompt_types) values.push_back(g.values.at(p));
    chart.values.push_back(std::move(values));
  }
  return chart;
}

std::vector<Plot> render_plots(const InsightTables& in, std::string& note) {
  std::vector<Plot> plots;
  if (!plots_available()) {
    note =
        "This build has no PLplot (or PLplot lacks its pngcairo driver), so the report has no "
        "plots.";
    return plots;
  }
  if (in.comparison.empty()) {
    note = "No trained run has a baseline, so there is nothing to plot.";
    return plots;
  }
  try {
    plots.push_back(
        {"dice_change_heatmap.png",
         "Dice change vs baseline (%) per recipe (rows) and dataset · prompt type (columns).",
         render_heatmap_png(change_heatmap(in))});
    plots.push_back({"dice_change_by_recipe.png",
                     "Mean Dice change vs baseline (%) per recipe and dataset.",
                     render_bars_png(recipe_bars(in))});
    plots.push_back({"dice_change_by_prompt.png",
                     "Mean Dice change vs baseline (%) per prompt type and dataset.",
                     render_bars_png(prompt_bars(in))});
  } catch (const Error& e) {
    // The tables and text are the report; plots are an extra that must not block them.
    spdlog::warn("insights: plots skipped: {}", e.what());
    note = fmt::format("Plots could not be drawn: {}", e.what());
    plots.clear();
  }
  return plots;
}

std::string markdown(const InsightsReport& report, const std::vector<Plot>& plots,
                     const std::string& note) {
  const auto& in = report.insights;
  std::string md = "# Training Insights Report\n\n";
  md += fmt::format(
      "Source: `{}` · {} baselines, {} trained runs ({} compared, {} excluded) · IRIS {}\n\n",
      fs::path(in.source).filename().string(), in.baselines.size(), in.trained_runs,
      in.comparison.size(), in.excluded.size(), build::kVersion);
  md += "## Conclusions\n\n";
  for (const auto& c : report.conclusions) md += "- " + c.text + "\n";
  md += "\n## Plots\n\n";
  if (plots.empty()) md += note + "\n\n";
  for (const auto& p : plots) md += fmt::format("![{}]({})\n\n", p.caption, p.file);
  for (const auto& t : report.tables) {
    md += fmt::format("## {}\n\n{}\n\n", t.title, t.description);
    md += t.rows.empty() ? "(none)\n\n" : table_markdown(t) + "\n";
  }
  return md;
}

constexpr const char* kCss =
    R"(body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.9em;color:#555}p.desc{color:#555}
)";

std::string html(const InsightsReport& report, const std::vector<Plot>& plots,
                 const std::string& note) {
  const auto& in = report.insights;
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>Training Insights Report</title>\n<style>\n";
  h += kCss;
  h += "</style>\n</head>\n<body>\n<h1>Training Insights Report</h1>\n";
  h += fmt::format(
      "<p>Source: <code>{}</code> · {} baselines, {} trained runs ({} compared, {} excluded) · "
      "IRIS {}</p>\n",
      html_escape(fs::path(in.source).filename().string()), in.baselines.size(), in.trained_runs,
      in.comparison.size(), in.excluded.size(), build::kVersion);
  h += "<h2>Conclusions</h2>\n<ul>\n";
  for (const auto& c : report.conclusions) h += "<li>" + html_escape(c.text) + "</li>\n";
  h += "</ul>\n<h2>Plots</h2>\n";
  if (plots.empty()) h += "<p>" + html_escape(note) + "</p>\n";
  for (const auto& p : plots) {
    h += fmt::format(
        "<figure><img alt=\"{0}\" "
        "src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>\n",
        html_escape(p.caption), base64_encode(p.png));
  }
  for (const auto& t : report.tables) {
    h += fmt::format("<h2 id=\"{}\">{}</h2>\n<p class=\"desc\">{}</p>\n", html_escape(t.id),
                     html_escape(t.title), html_escape(t.description));
    h += t.rows.empty() ? "<p>(none)</p>\n" : table_html(t);
  }
  h += "</body>\n</html>\n";
  return h;
}

std::string json(const InsightsReport& report, const std::vector<Plot>& plots,
                 const std::string& note) {
  const auto& in = report.insights;
  nlohmann::ordered_json j;
  j["title"] = "Training Insights Report";
  j["source"] = in.source;
  j["iris_version"] = build::kVersion;
  j["counts"] = {{"baselines", in.baselines.size()},
                 {"trained_runs", in.trained_runs},
                 {"compared_runs", in.comparison.size()},
                 {"excluded_runs", in.excluded.size()}};
  j["missing_baselines"] = in.missing_baselines;
  j["conclusions"] = nlohmann::ordered_json::array();
  for (const auto& c : report.conclusions)
    j["conclusions"].push_back({{"topic", c.topic}, {"text", c.text}});
  j["plots"] = nlohmann::ordered_json::array();
  for (const auto& p : plots) j["plots"].push_back(p.file);
  if (plots.empty()) j["plot_note"] = note;
  j["table_titles"] = nlohmann::ordered_json::object();
  j["tables"] = nlohmann::ordered_json::object();
  for (const auto& t : report.tables) {
    j["table_titles"][t.id] = t.title;
    j["tables"][t.id] = table_json(t);
  }
  return j.dump(2) + "\n";
}

}  // namespace

InsightsReport build_insights_report(const track::RunTable& runs) {
  InsightsReport report;
  report.insights = compute_insights(runs);
  report.tables = insight_tables(report.insights);
  report.conclusions = write_conclusions(report.insights, report.tables);
  return report;
}

InsightsFiles write_insights_report(const InsightsReport& report, const fs::path& out_dir,
                                    const InsightsWriteOptions& options) {
  InsightsFiles files;
  std::vector<Plot> plots;
  if (options.plots) {
    plots = render_plots(report.insights, files.plot_note);
  } else {
    files.plot_note = "Plots were turned off.";
  }
  for (const auto& p : plots) {
    files.plots.push_back(out_dir / p.file);
    write_file_atomic(files.plots.back(), p.png);
  }
  files.markdown = out_dir / "insights.md";
  files.html = out_dir / "insights.html";
  files.json = out_dir / "insights.json";
  write_file_atomic(files.markdown, markdown(report, plots, files.plot_note));
  write_file_atomic(files.html, html(report, plots, files.plot_note));
  write_file_atomic(files.json, json(report, plots, files.plot_note));
  return files;
}

const char* report_stylesheet() {
  return kCss;
}

std::string base64_encode(const std::string& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace iris::report
