// W&B CSV exports <-> the run table. Export columns vary between projects, so each role (run name,
// metric, config key) is found by name: a list of usual spellings, or an explicit override.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "track/run_table.h"

namespace iris::track {

// Roles a CSV column can play. Optional roles may be absent from the file.
struct ColumnRole {
  const char* role;                   // as written in `--column role=name`
  std::vector<const char*> defaults;  // spellings tried in order (case-insensitive)
  bool required;
  const char* meaning;
};

// The roles, in W&B export order: name, dice, mae, miou, prompt_type, trainable_modules, dataset,
// max_epochs, recipe (optional; otherwise taken from the run name).
const std::vector<ColumnRole>& column_roles();

// role -> column name overrides, parsed from "role=name" strings. Throws UsageError for a
// malformed entry or an unknown role.
using ColumnOverrides = std::map<std::string, std::string>;
ColumnOverrides parse_column_overrides(const std::vector<std::string>& entries);

// kStudy requires every required role (what the insights report needs); kNameOnly only the run
// name, for importing runs whose exports lack study columns (an empty or absent max_epochs then
// means "no epoch budget": has_max_epochs false, not a baseline).
enum class RoleCheck { kStudy, kNameOnly };

// Parses the text of a W&B export. `source` names the file in messages. Throws InputError naming
// the file, line and run for a missing required column, a non-numeric metric or max_epochs, or an
// unreadable module list. An empty or NaN metric cell means "no value" (a crashed or unfinished
// run) and leaves the metric out of RunRecord::metrics. Columns beyond the roles fill the
// record's extras: State, Created, Runtime; names with '/' are numeric summary values; W&B's
// bookkeeping columns (Notes, User, Tags, ...) are skipped; the rest are config values.
RunTable parse_wandb_csv(const std::string& text, const std::string& source,
                         const ColumnOverrides& overrides = {},
                         RoleCheck check = RoleCheck::kStudy);
RunTable read_wandb_csv(const std::filesystem::path& path, const ColumnOverrides& overrides = {},
                        RoleCheck check = RoleCheck::kStudy);

// The table in the study's export layout (every field quoted, floats at full precision,
// trainable modules as a JSON list), so that parse_wandb_csv(format_wandb_csv(t)) == t. A ninth
// "recipe" column is added only when a run's recipe differs from the one its name gives. When
// runs carry extras (state, created, runtime, config, summary, no epoch budget) the layout is W&B's
// full runs table: Name, State, Created, Runtime, eval/* and other summary values with '/' in
// their key, the study's config columns, the other dotted config keys, [recipe].
std::string format_wandb_csv(const RunTable& table);
void write_wandb_csv(const std::filesystem::path& path, const RunTable& table);

}  // namespace iris::track
