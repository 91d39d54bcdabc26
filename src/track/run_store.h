// The run store: every run folder under a runs root, read into RunRecords. The folders are the
// source of truth; `<root>/runs.db` (SQLite, when built with it) indexes them so that listing
// does not re-read every config and summary. The index is refreshed for each folder whose files
// changed since it was indexed, and can be rebuilt from scratch at any time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "track/run_table.h"

namespace iris::track {

namespace fs = std::filesystem;

// Exact-match filters; an empty field matches every run.
struct RunFilter {
  std::string dataset;
  std::string prompt_type;
  std::string recipe;
  std::string state;

  bool matches(const RunRecord& run) const;
};

// A folder that looks like a run but could not be read; listed, never fatal.
struct StoreProblem {
  std::string folder;
  std::string message;
};

struct RunScan {
  std::vector<RunRecord> runs;  // ordered by creation time, then folder name
  std::vector<StoreProblem> problems;
  bool indexed = false;     // runs.db is in use (SQLite built in)
  std::size_t reread = 0;   // folders read from disk rather than from runs.db
  bool db_written = false;  // runs.db was (re)written by this scan
};

struct ImportResult {
  std::vector<std::string> created;  // new run folders
  std::vector<std::string> skipped;  // runs already imported with the same content
};

// The value of a metric in metrics.jsonl's last row that holds it.
struct LastMetric {
  double value = 0;
  std::int64_t step = -1;  // -1: the row had no "step"
};

class RunStore {
 public:
  explicit RunStore(fs::path root);

  const fs::path& root() const { return root_; }
  fs::path db_path() const { return root_ / "runs.db"; }

  // Every run, refreshing runs.db for folders that changed (all of them with `rebuild`). A
  // missing root gives no runs. Throws RuntimeFailure when runs.db cannot be written.
  RunScan scan(bool rebuild = false) const;
  std::vector<RunRecord> list(const RunFilter& filter = {}, bool rebuild = false) const;

  // The run with this folder name, or else this display name. Throws InputError listing the
  // closest names when there is none, or the folders when the display name is ambiguous.
  RunRecord find(const std::string& name) const;

  // Creates one run folder per run of `table` (named after the run, made unique), marked as
  // imported from `source`. A run imported before with identical content is skipped, so
  // importing a file twice adds nothing.
  ImportResult import_runs(const RunTable& table, const std::string& source) const;

 private:
  fs::path root_;
};

// Reads one run folder: config.yaml (flattened to dotted keys), summary.json and file times.
// Throws InputError naming the file for an unreadable config or summary.
RunRecord read_run_folder(const fs::path& folder);

// A folder holding config.yaml, summary.json or metrics.jsonl.
bool is_run_folder(const fs::path& folder);

// Last value and step of every numeric key in the folder's metrics.jsonl.
std::map<std::string, LastMetric> last_metrics(const fs::path& folder);

// A YAML document flattened to dotted keys; sequences and mappings inside lists become JSON.
std::map<std::string, std::string> flatten_yaml(const std::string& text, const std::string& source);
// The inverse: dotted keys nested into YAML, JSON list values as sequences.
std::string nest_yaml(const std::map<std::string, std::string>& flat);

// Up to `n` candidates ordered by edit distance to `word` (case-insensitive).
std::vector<std::string> closest_names(const std::string& word,
                                       const std::vector<std::string>& candidates, std::size_t n);

// The records as a RunTable for the insights report.
RunTable to_run_table(std::vector<RunRecord> runs, const std::string& source);

}  // namespace iris::track
