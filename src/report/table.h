// A report table independent of its output format: typed cells, formatted one way for Markdown
// and HTML (printed precision) and kept at full precision in JSON.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace iris::report {

enum class CellFormat { kText, kCount, kMetric, kPercent, kTriple };

// Dice / mIoU / MAE of one performance-table cell; `best` marks the column's best trained cell.
struct MetricTriple {
  double dice = 0, miou = 0, mae = 0;
  bool best = false;
};

// std::monostate is an empty cell (no runs): "—" in text, null in JSON.
using Cell = std::variant<std::monostate, std::string, double, std::int64_t, MetricTriple>;

struct Column {
  std::string name;
  CellFormat format = CellFormat::kText;
};

struct Table {
  std::string id;  // key in insights.json, anchor in HTML
  std::string title;
  std::string description;  // one line under the title
  std::vector<Column> columns;
  std::vector<std::vector<Cell>> rows = {};
};

// The printed text of a cell: metrics with 4 decimals, percentages with 2, counts as integers.
std::string format_cell(const Cell& cell, CellFormat format);

std::string table_markdown(const Table& table);
std::string table_html(const Table& table);
// A list of row objects keyed by column name; numbers at full precision.
nlohmann::ordered_json table_json(const Table& table);

// Escapes &, <, >, " for HTML text and attributes.
std::string html_escape(const std::string& text);

}  // namespace iris::report
