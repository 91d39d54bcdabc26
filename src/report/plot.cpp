#include "report/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <random>
#include <string_view>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"

#if IRIS_HAVE_PLOT
#include <plplot/plstream.h>
#endif

namespace iris::report {

bool plots_available() {
  return IRIS_HAVE_PLOT != 0;
}

#if IRIS_HAVE_PLOT

namespace {

namespace fs = std::filesystem;

constexpr int kWidth = 1600;
constexpr int kHeight = 1000;
constexpr int kScratchColor = 15;    // cmap0 slot redefined for each filled shape
constexpr double kTextScale = 0.62;  // PLplot's default characters are too large at this size
constexpr double kTitleScale = 0.85;
constexpr double kLabelScale = 0.55;  // axis category labels, which sit side by side

// Series colours (Okabe-Ito, readable for colour-blind readers).
constexpr std::array<std::array<int, 3>, 8> kPalette = {{{0, 114, 178},
                                                         {230, 159, 0},
                                                         {0, 158, 115},
                                                         {204, 121, 167},
                                                         {86, 180, 233},
                                                         {213, 94, 0},
                                                         {240, 228, 66},
                                                         {0, 0, 0}}};

// PLplot writes to a file name; draw into a private temporary file and return its bytes.
class PngCanvas {
 public:
  PngCanvas() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / fmt::format("iris-plot-{:08x}{:08x}.png", rd(), rd());
    pls_ = std::make_unique<plstream>();
    pls_->sdev("pngcairo");
    pls_->sfnam(path_.string().c_str());
    pls_->spage(0, 0, kWidth, kHeight, 0, 0);
    pls_->scolbg(255, 255, 255);
    pls_->scol0(1, 0, 0, 0);        // axes and text: black
    pls_->scol0(2, 160, 160, 160);  // grid and empty cells: grey
    pls_->init();
    pls_->adv(0);
    pls_->schr(0, kTextScale);
  }
  ~PngCanvas() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  plstream& operator*() { return *pls_; }
  plstream* operator->() { return pls_.get(); }

  void fill_rgb(const std::array<int, 3>& rgb, double x0, double x1, double y0, double y1) {
    pls_->scol0(kScratchColor, rgb[0], rgb[1], rgb[2]);
    pls_->col0(kScratchColor);
    const double xs[] = {x0, x1, x1, x0};
    const double ys[] = {y0, y0, y1, y1};
    pls_->fill(4, xs, ys);
    pls_->col0(1);
  }

  std::string finish() {
    pls_.reset();  // plend1 flushes and closes the file
    std::string bytes = read_file(path_);
    if (bytes.size() < 8 || bytes.compare(1, 3, "PNG") != 0) {
      throw RuntimeFailure(file_message(path_.string(), "PLplot did not write a PNG file"));
    }
    return bytes;
  }

 private:
  fs::path path_;
  std::unique_ptr<plstream> pls_;
};

// Diverging blue-white-red scale for t in [-1, 1].
std::array<int, 3> diverging(double t) {
  t = std::clamp(t, -1.0, 1.0);
  const std::array<double, 3> blue{33, 102, 172}, white{247, 247, 247}, red{178, 24, 43};
  const auto& end = t < 0 ? blue : red;
  const double a = std::abs(t);
  std::array<int, 3> rgb{};
  for (int i = 0; i < 3; ++i)
    rgb[i] = static_cast<int>(std::lround(white[i] + a * (end[i] - white[i])));
  return rgb;
}

std::string signed_value(double v) {
  return fmt::format("{:+.2f}", v);
}

}  // namespace

std::string render_heatmap_png(const HeatMap& map) {
  const int rows = static_cast<int>(map.row_labels.size());
  const int cols = static_cast<int>(map.column_labels.size());
  if (rows == 0 || cols == 0) throw RuntimeFailure("heat map '" + map.title + "' has no cells");
  double range = 0;
  for (const auto& row : map.values) {
    for (const auto& v : row) {
      if (v) range = std::max(range, std::abs(*v));
    }
  }
  if (range == 0) range = 1;

  PngCanvas canvas;
  canvas->vpor(0.13, 0.86, 0.12, 0.92);
  canvas->wind(0, cols, 0, rows);
  for (int r = 0; r < rows; ++r) {
    const double y1 = rows - r, y0 = y1 - 1;
    for (int c = 0; c < cols; ++c) {
      const auto& v = map.values[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)];
      if (!v) {
        canvas.fill_rgb({220, 220, 220}, c, c + 1, y0, y1);
        canvas->ptex(c + 0.5, y0 + 0.45, 1, 0, 0.5, "n/a");
        continue;
      }
      const double t = *v / range;
      canvas.fill_rgb(diverging(t), c, c + 1, y0, y1);
      // White text on saturated cells, black elsewhere.
      if (std::abs(t) > 0.6)
        canvas->scol0(3, 255, 255, 255);
      else
        canvas->scol0(3, 0, 0, 0);
      canvas->col0(3);
      canvas->ptex(c + 0.5, y0 + 0.42, 1, 0, 0.5, signed_value(*v).c_str());
      canvas->col0(1);
    }
    canvas->mtex("lv", 0.8, 1.0 - (r + 0.5) / rows, 1.0,
                 map.row_labels[static_cast<std::size_t>(r)].c_str());
  }
  canvas->box("bc", 1.0, 0, "bc", 1.0, 0);  // cell borders
  for (int c = 1; c < cols; ++c) canvas->join(c, 0, c, rows);
  for (int r = 1; r < rows; ++r) canvas->join(0, r, cols, r);
  canvas->schr(0, kLabelScale);
  for (int c = 0; c < cols; ++c) {
    const std::string& label = map.column_labels[static_cast<std::size_t>(c)];
    const auto nl = label.find('\n');
    const double pos = (c + 0.5) / cols;
    canvas->mtex("b", 1.5, pos, 0.5, label.substr(0, nl).c_str());
    if (nl != std::string::npos) canvas->mtex("b", 3.0, pos, 0.5, label.substr(nl + 1).c_str());
  }
  canvas->schr(0, kTitleScale);
  canvas->mtex("t", 1.5, 0.5, 0.5, map.title.c_str());
  canvas->schr(0, kTextScale);

  // Colour bar.
  constexpr int kSteps = 64;
  canvas->vpor(0.885, 0.905, 0.12, 0.92);
  canvas->wind(0, 1, -range, range);
  for (int i = 0; i < kSteps; ++i) {
    const double y0 = -range + 2 * range * i / kSteps, y1 = -range + 2 * range * (i + 1) / kSteps;
    canvas.fill_rgb(diverging((y0 + y1) / 2 / range), 0, 1, y0, y1);
  }
  canvas->box("bc", 0, 0, "bcmstv", 0, 0);
  canvas->mtex("r", 4.5, 0.5, 0.5, map.value_label.c_str());
  return canvas.finish();
}

std::string render_bars_png(const BarChart& chart) {
  const int groups = static_cast<int>(chart.categories.size());
  const int series = static_cast<int>(chart.series.size());
  if (groups == 0 || series == 0)
    throw RuntimeFailure("bar chart '" + chart.title + "' has no bars");
  double lo = 0, hi = 0;
  for (const auto& s : chart.values) {
    for (const auto& v : s) {
      if (v) {
        lo = std::min(lo, *v);
        hi = std::max(hi, *v);
      }
    }
  }
  const double pad = std::max(0.1 * (hi - lo), 0.5);
  lo = lo < 0 ? lo - pad : 0;
  hi += pad;

  PngCanvas canvas;
  canvas->vpor(0.08, 0.82, 0.10, 0.92);
  canvas->wind(0, groups, lo, hi);
  canvas->col0(2);
  canvas->box("", 0, 0, "g", 0, 0);  // horizontal grid lines behind the bars
  canvas->col0(1);
  const double slot = 0.8 / series;
  for (int s = 0; s < series; ++s) {
    const auto& rgb = kPalette[static_cast<std::size_t>(s) % kPalette.size()];
    for (int g = 0; g < groups; ++g) {
      const auto& v = chart.values[static_cast<std::size_t>(s)][static_cast<std::size_t>(g)];
      if (!v) continue;
      const double x0 = g + 0.1 + s * slot, x1 = x0 + slot * 0.92;
      canvas.fill_rgb(rgb, x0, x1, std::min(0.0, *v), std::max(0.0, *v));
    }
  }
  canvas->join(0, 0, groups, 0);  // zero line
  canvas->box("bc", 1.0, 0, "bcnstv", 0, 0);
  canvas->schr(0, kLabelScale);
  for (int g = 0; g < groups; ++g) {
    canvas->mtex("b", 1.5, (g + 0.5) / groups, 0.5,
                 chart.categories[static_cast<std::size_t>(g)].c_str());
  }
  canvas->mtex("l", 4.0, 0.5, 0.5, chart.y_label.c_str());
  canvas->schr(0, kTitleScale);
  canvas->mtex("t", 1.5, 0.5, 0.5, chart.title.c_str());
  canvas->schr(0, kTextScale);

  // Legend at the right.
  canvas->vpor(0.84, 0.99, 0.10, 0.92);
  canvas->wind(0, 1, 0, 1);
  for (int s = 0; s < series; ++s) {
    const double y = 0.97 - 0.05 * s;
    canvas.fill_rgb(kPalette[static_cast<std::size_t>(s) % kPalette.size()], 0.02, 0.14, y - 0.015,
                    y + 0.015);
    canvas->ptex(0.18, y - 0.008, 1, 0, 0, chart.series[static_cast<std::size_t>(s)].c_str());
  }
  return canvas.finish();
}

std::string render_lines_png(const LineChart& chart) {
  double x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  bool any = false;
  auto value = [&](double y) { return chart.log_y ? std::log10(y) : y; };
  for (const auto& s : chart.series) {
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_y && s.y[i] <= 0))
        continue;
      const double y = value(s.y[i]);
      if (!any) {
        x0 = x1 = s.x[i];
        y0 = y1 = y;
        any = true;
      }
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  }
  if (!any) throw RuntimeFailure("line chart '" + chart.title + "' has no values");
  if (x1 == x0) x1 = x0 + 1;
  const double pad = y1 > y0 ? 0.05 * (y1 - y0) : std::max(0.05 * std::abs(y0), 1e-6);
  y0 -= pad;
  y1 += pad;

  PngCanvas canvas;
  canvas->vpor(0.09, 0.80, 0.10, 0.92);
  canvas->wind(x0, x1, y0, y1);
  canvas->col0(2);
  canvas->box("g", 0, 0, "g", 0, 0);
  canvas->col0(1);
  canvas->box("bcnst", 0, 0, chart.log_y ? "bcnstvl" : "bcnstv", 0, 0);
  for (std::size_t s = 0; s < chart.series.size(); ++s) {
    const auto& series = chart.series[s];
    std::vector<double> xs, ys;
    for (std::size_t i = 0; i < std::min(series.x.size(), series.y.size()); ++i) {
      if (!std::isfinite(series.x[i]) || !std::isfinite(series.y[i])) continue;
      if (chart.log_y && series.y[i] <= 0) continue;
      xs.push_back(series.x[i]);
      ys.push_back(value(series.y[i]));
    }
    if (xs.empty()) continue;
    auto rgb = kPalette[s % kPalette.size()];
    if (series.faint) {
      for (auto& c : rgb) c = (c + 2 * 210) / 3;  // blend towards light grey
    }
    canvas->scol0(kScratchColor, rgb[0], rgb[1], rgb[2]);
    canvas->col0(kScratchColor);
    canvas->width(series.faint ? 1.0 : 2.5);
    canvas->line(static_cast<int>(xs.size()), xs.data(), ys.data());
    if (series.markers) canvas->poin(static_cast<int>(xs.size()), xs.data(), ys.data(), 17);
    canvas->width(1.0);
    canvas->col0(1);
  }
  canvas->mtex("b", 3.0, 0.5, 0.5, chart.x_label.c_str());
  canvas->mtex("l", 5.0, 0.5, 0.5, chart.y_label.c_str());
  canvas->schr(0, kTitleScale);
  canvas->mtex("t", 1.5, 0.5, 0.5, chart.title.c_str());
  canvas->schr(0, kTextScale);

  // Legend at the right.
  canvas->vpor(0.82, 0.99, 0.10, 0.92);
  canvas->wind(0, 1, 0, 1);
  for (std::size_t s = 0; s < chart.series.size(); ++s) {
    auto rgb = kPalette[s % kPalette.size()];
    if (chart.series[s].faint) {
      for (auto& c : rgb) c = (c + 2 * 210) / 3;
    }
    const double y = 0.97 - 0.05 * static_cast<double>(s);
    canvas.fill_rgb(rgb, 0.02, 0.14, y - 0.006, y + 0.006);
    canvas->ptex(0.18, y - 0.008, 1, 0, 0, chart.series[s].name.c_str());
  }
  return canvas.finish();
}

#else

std::string render_lines_png(const LineChart&) {
  throw NotAvailableError("plots need PLplot, which this build lacks");
}
std::string render_heatmap_png(const HeatMap&) {
  throw NotAvailableError("plots need PLplot, which this build lacks");
}
std::string render_bars_png(const BarChart&) {
  throw NotAvailableError("plots need PLplot, which this build lacks");
}

#endif

}  // namespace iris::report
