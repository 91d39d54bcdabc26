#include "report/table.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace iris::report {

namespace {

std::string markdown_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

bool is_numeric(CellFormat f) {
  return f == CellFormat::kCount || f == CellFormat::kMetric || f == CellFormat::kPercent;
}

}  // namespace

std::string format_cell(const Cell& cell, CellFormat format) {
  struct Visitor {
    CellFormat format;
    std::string operator()(std::monostate) const { return "—"; }
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const {
      // Round first so that -0.00004 prints as 0.0000, not -0.0000.
      const int decimals = format == CellFormat::kPercent ? 2 : 4;
      std::string text = fmt::format("{:.{}f}", v, decimals);
      if (text.find_first_not_of("-0.") == std::string::npos && text[0] == '-') text.erase(0, 1);
      return text;
    }
    std::string operator()(const MetricTriple& t) const {
      return fmt::format("{:.4f} / {:.4f} / {:.4f}", t.dice, t.miou, t.mae);
    }
  };
  return std::visit(Visitor{format}, cell);
}

std::string table_markdown(const Table& table) {
  std::string out;
  out += "|";
  for (const auto& c : table.columns) out += " " + markdown_escape(c.name) + " |";
  out += "\n|";
  for (const auto& c : table.columns) out += is_numeric(c.format) ? "---:|" : ":---|";
  out += "\n";
  for (const auto& row : table.rows) {
    out += "|";
    for (std::size_t i = 0; i < table.columns.size(); ++i) {
      std::string text = markdown_escape(format_cell(row[i], table.columns[i].format));
      if (const auto* t = std::get_if<MetricTriple>(&row[i]); t && t->best)
        text = "**" + text + "**";
      out += " " + text + " |";
    }
    out += "\n";
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string table_html(const Table& table) {
  std::string out = fmt::format("<table id=\"{}\">\n<thead><tr>", html_escape(table.id));
  for (const auto& c : table.columns) out += "<th>" + html_escape(c.name) + "</th>";
  out += "</tr></thead>\n<tbody>\n";
  for (const auto& row : table.rows) {
    out += "<tr>";
    for (std::size_t i = 0; i < table.columns.size(); ++i) {
      const auto* t = std::get_if<MetricTriple>(&row[i]);
      const char* cls = is_numeric(table.columns[i].format) || t ? " class=\"num\"" : "";
      std::string text = html_escape(format_cell(row[i], table.columns[i].format));
      if (t && t->best) text = "<strong>" + text + "</strong>";
      out += fmt::format("<td{}>{}</td>", cls, text);
    }
    out += "</tr>\n";
  }
  out += "</tbody>\n</table>\n";
  return out;
}

nlohmann::ordered_json table_json(const Table& table) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& row : table.rows) {
    nlohmann::ordered_json obj = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < table.columns.size(); ++i) {
      const auto& name = table.columns[i].name;
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
              obj[name] = nullptr;
            } else if constexpr (std::is_same_v<T, MetricTriple>) {
              obj[name] = {{"Dice", v.dice}, {"mIoU", v.miou}, {"MAE", v.mae}, {"best", v.best}};
            } else {
              obj[name] = v;
            }
          },
          row[i]);
    }
    rows.push_back(std::move(obj));
  }
  return rows;
}

}  // namespace iris::report
