// Conclusions of the insights report, generated from the tables. Every comparison is made on the
// values as printed (4 decimals for metrics, 2 for percentages), so a sentence can never
// contradict a table, and every decimal number a sentence quotes must appear in a table.
#pragma once

#include <string>
#include <vector>

#include "report/insights.h"
#include "report/table.h"

namespace iris::report {

struct Conclusion {
  std::string topic;  // e.g. "memory", "recipe"; stable for tests and JSON
  std::string text;
};

// The conclusions for `insights`, checked against `tables` (from insight_tables(insights)):
// a sentence quoting a number that no table prints is dropped with a logged warning.
std::vector<Conclusion> write_conclusions(const InsightTables& insights,
                                          const std::vector<Table>& tables);

// Decimal numbers in `text` (e.g. "0.7946", "3.34") that no cell of `tables` prints; empty when
// the sentence is backed by the tables.
std::vector<std::string> unbacked_numbers(const std::string& text,
                                          const std::vector<Table>& tables);

}  // namespace iris::report
