// The run table: one record per tracked run (trained or baseline), independent of where it came
// from (a W&B CSV export or a run folder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace iris::track {

// Metric keys of RunRecord::metrics.
inline constexpr const char* kDice = "dice";
inline constexpr const char* kMiou = "miou";
inline constexpr const char* kMae = "mae";

struct RunRecord {
  std::string name;
  std::string dataset;
  std::string prompt_type;
  std::string recipe;  // e.g. "mem+md+pe+ie"
  std::vector<std::string> trainable_modules;
  int max_epochs = 0;
  bool has_max_epochs = true;             // false: the source gives no epoch budget
  std::map<std::string, double> metrics;  // a missing key means the run has no value
  bool is_baseline = false;               // max_epochs == 0: the untrained model
  std::size_t line = 0;                   // source line, 0 when not from a file

  // What run folders and full W&B exports carry beyond the study's columns; empty otherwise.
  std::string state;                          // finished | running | crashed | failed | killed
  std::string created;                        // ISO 8601, UTC
  std::optional<double> runtime;              // seconds
  std::optional<std::int64_t> max_steps;      // step budget of step-based training
  bool imported = false;                      // created by `iris runs import`
  std::string folder;                         // run folder name (unique; `name` may repeat)
  std::map<std::string, std::string> config;  // dotted key -> value text, lists as JSON
  std::map<std::string, double> summary;      // numeric summary values besides `metrics`

  bool has_module(const std::string& module) const;
  bool has_memory() const { return has_module("memory_encoder"); }
  bool has_image_encoder() const { return has_module("image_encoder"); }
  std::optional<double> metric(const std::string& key) const;
  // "line 12, run 'x'" or "run 'x'" — how messages point at a run.
  std::string where() const;
};

struct RunTable {
  std::string source;  // file the runs came from, for messages
  std::vector<RunRecord> runs;
};

// The recipe token of a study run name "<dataset>_<prompt>_<recipe>__<job>": the part after
// "<dataset>_<prompt>_" when the name starts so, else the third '_'-separated token; "" if none.
std::string recipe_from_name(const std::string& name, const std::string& dataset,
                             const std::string& prompt_type);

}  // namespace iris::track
