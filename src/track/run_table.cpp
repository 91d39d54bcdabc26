#include "track/run_table.h"

#include <fmt/format.h>

#include <algorithm>

namespace iris::track {

bool RunRecord::has_module(const std::string& module) const {
  return std::find(trainable_modules.begin(), trainable_modules.end(), module) !=
         trainable_modules.end();
}

std::optional<double> RunRecord::metric(const std::string& key) const {
  const auto it = metrics.find(key);
  if (it == metrics.end()) return std::nullopt;
  return it->second;
}

std::string RunRecord::where() const {
  if (line == 0) return fmt::format("run '{}'", name);
  return fmt::format("line {}, run '{}'", line, name);
}

std::string recipe_from_name(const std::string& name, const std::string& dataset,
                             const std::string& prompt_type) {
  // Drop the "__<job id>" suffix first.
  const std::string stem = name.substr(0, name.find("__"));
  const std::string prefix = dataset + "_" + prompt_type + "_";
  if (!dataset.empty() && !prompt_type.empty() && stem.rfind(prefix, 0) == 0 &&
      stem.size() > prefix.size()) {
    return stem.substr(prefix.size());
  }
  std::size_t start = 0;
  for (int token = 0; token < 2; ++token) {
    const std::size_t at = stem.find('_', start);
    if (at == std::string::npos) return "";
    start = at + 1;
  }
  return stem.substr(start, stem.find('_', start) - start);
}

}  // namespace iris::track
