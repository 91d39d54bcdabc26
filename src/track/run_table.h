// The run table: one record per tracked run (trained or baseline), independent of where it came
// from (a W&B CSV export today, run folders later).
#pragma once

#include <cstddef>
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
  std::map<std::string, double> metrics;  // a missing key means the run has no value
  bool is_baseline = false;               // max_epochs == 0: the untrained model
  std::size_t line = 0;                   // source line, 0 when not from a file

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
