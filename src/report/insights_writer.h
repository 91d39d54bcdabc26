// Writes the insights report: insights.md, a self-contained insights.html (plots inlined as
// base64 PNG), insights.json with every table and conclusion, and the PNG plots themselves.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "report/insights.h"
#include "report/insights_text.h"
#include "track/run_table.h"

namespace iris::report {

namespace fs = std::filesystem;

struct InsightsReport {
  InsightTables insights;
  std::vector<Table> tables;
  std::vector<Conclusion> conclusions;
};

// Tables and checked conclusions for a run table (see compute_insights for the errors thrown).
InsightsReport build_insights_report(const track::RunTable& runs);

struct InsightsFiles {
  fs::path markdown, html, json;
  std::vector<fs::path> plots;  // empty when the build has no PLplot or plotting was turned off
  std::string plot_note;        // why there are no plots, if there are none
};

struct InsightsWriteOptions {
  bool plots = true;
};

// Writes every file atomically into `out_dir` (created if missing).
InsightsFiles write_insights_report(const InsightsReport& report, const fs::path& out_dir,
                                    const InsightsWriteOptions& options = {});

// RFC 4648 base64, for data URIs.
std::string base64_encode(const std::string& bytes);

// The CSS every self-contained HTML report embeds (tables, figures, captions).
const char* report_stylesheet();

}  // namespace iris::report
