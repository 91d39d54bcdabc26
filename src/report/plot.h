// PNG charts for reports, drawn with PLplot's cairo PNG driver when the build has PLplot.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace iris::report {

// False when the build has no PLplot or PLplot has no pngcairo driver; the render functions then
// throw NotAvailableError (without PLplot) and callers are expected to check first.
bool plots_available();

// A grid of values coloured on a diverging scale centred at 0, each cell labelled with its value.
struct HeatMap {
  std::string title;
  std::string value_label;                                 // e.g. "Dice change vs baseline (%)"
  std::vector<std::string> row_labels;                     // top to bottom
  std::vector<std::string> column_labels;                  // may hold "\n" for a second line
  std::vector<std::vector<std::optional<double>>> values;  // [row][column]; nullopt: no run
};

// Grouped bars: one group per category, one bar per series.
struct BarChart {
  std::string title;
  std::string y_label;
  std::vector<std::string> categories = {};
  std::vector<std::string> series = {};
  std::vector<std::vector<std::optional<double>>> values = {};  // [series][category]
};

// Lines over a numeric x axis, e.g. a metric per training step.
struct LineSeries {
  std::string name;
  std::vector<double> x, y;
  bool markers = false;  // draw a point at each value (sparse series such as validations)
  bool faint = false;  // thin grey-tinted line behind the others (raw values under a smoothed one)
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<LineSeries> series = {};
  bool log_y = false;  // base-10 y axis; values <= 0 are left out
};

// The PNG file's bytes. Throws RuntimeFailure when drawing fails.
std::string render_heatmap_png(const HeatMap& map);
std::string render_bars_png(const BarChart& chart);
std::string render_lines_png(const LineChart& chart);

}  // namespace iris::report
