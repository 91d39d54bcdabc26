#include "track/wandb_csv.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "track/csv.h"

namespace iris::track {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Full-string double parse; nullopt when the text is not a number.
std::optional<double> parse_double(const std::string& text) {
  const std::string t = trim(text);
  double value = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (ec != std::errc() || ptr != t.data() + t.size() || t.empty()) return std::nullopt;
  return value;
}

bool is_missing_value(const std::string& text) {
  const std::string t = lower(trim(text));
  return t.empty() || t == "nan" || t == "none" || t == "null";
}

// W&B writes list configs as JSON; also accept Python reprs (['a', 'b']) and "a,b".
std::vector<std::string> parse_module_list(const std::string& text, const std::string& source,
                                           std::size_t line, const std::string& run) {
  const std::string t = trim(text);
  if (t.empty()) return {};
  if (t.front() == '[') {
    const auto json = nlohmann::json::parse(t, nullptr, false);
    if (!json.is_discarded() && json.is_array()) {
      std::vector<std::string> out;
      for (const auto& item : json) {
        if (!item.is_string()) break;
        out.push_back(item.get<std::string>());
      }
      if (out.size() == json.size()) return out;
    }
    if (t.back() != ']') {
      throw InputError(file_message(
          source, fmt::format("line {}, run '{}': trainable modules '{}' is not a list; expected "
                              "e.g. [\"mask_decoder\",\"prompt_encoder\"]",
                              line, run, text)));
    }
  }
  std::string inner = t.front() == '[' ? t.substr(1, t.size() - 2) : t;
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= inner.size()) {
    const std::size_t comma = std::min(inner.find(',', start), inner.size());
    std::string item = trim(inner.substr(start, comma - start));
    if (item.size() >= 2 && (item.front() == '\'' || item.front() == '"') &&
        item.back() == item.front()) {
      item = item.substr(1, item.size() - 2);
    }
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

// Column index per role; -1 when an optional role is absent.
std::map<std::string, int> map_columns(const std::vector<std::string>& header,
                                       const std::string& source, const ColumnOverrides& overrides,
                                       RoleCheck check) {
  std::map<std::string, int> index;
  auto find = [&](const std::string& name) -> int {
    for (std::size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return static_cast<int>(i);
    }
    for (std::size_t i = 0; i < header.size(); ++i) {
      if (lower(trim(header[i])) == lower(name)) return static_cast<int>(i);
    }
    return -1;
  };
  for (const ColumnRole& role : column_roles()) {
    int at = -1;
    std::string tried;
    if (const auto it = overrides.find(role.role); it != overrides.end()) {
      at = find(it->second);
      tried = fmt::format("'{}' (from --column {}={})", it->second, role.role, it->second);
      if (at < 0) {
        throw InputError(
            file_message(source, fmt::format("no column {} for {}; the header has: {}", tried,
                                             role.meaning, fmt::join(header, ", "))));
      }
    } else {
      std::vector<std::string> names;
      for (const char* name : role.defaults) {
        names.push_back(fmt::format("'{}'", name));
        if (at < 0) at = find(name);
      }
      tried = fmt::format("{}", fmt::join(names, " or "));
    }
    const bool required =
        role.required && (check == RoleCheck::kStudy || std::string(role.role) == "name");
    if (at < 0 && required) {
      throw InputError(file_message(
          source, fmt::format("missing required column {} ({}); the header has: {}. Map another "
                              "column with --column {}=NAME",
                              tried, role.meaning, fmt::join(header, ", "), role.role)));
    }
    index[role.role] = at;
  }
  return index;
}

// W&B bookkeeping columns that are neither config nor summary.
bool is_bookkeeping_column(const std::string& name) {
  static const char* const kNames[] = {"notes",    "user", "tags",     "sweep",  "group",
                                       "job type", "id",   "hostname", "commit", "github"};
  const std::string n = lower(trim(name));
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* k) { return n == k; });
}

// Summary keys of the three metrics in our exports.
constexpr std::pair<const char*, const char*> kMetricColumns[] = {
    {kDice, "eval/Dice"}, {kMae, "eval/MAE"}, {kMiou, "eval/mIoU"}};

// The study's config columns, written from the record's fields.
constexpr const char* kStudyConfigColumns[] = {"module.model.prompt_type",
                                               "module.model.trainable_modules",
                                               "data_module.data.name", "trainer.max_epochs"};

// A config key that parse_wandb_csv would take as a role column, so exports leave it out.
bool is_role_spelling(const std::string& key) {
  for (const ColumnRole& role : column_roles()) {
    for (const char* name : role.defaults) {
      if (lower(key) == lower(name)) return true;
    }
  }
  return false;
}

bool has_extras(const RunRecord& run) {
  return !run.state.empty() || !run.created.empty() || run.runtime || !run.config.empty() ||
         !run.summary.empty() || !run.has_max_epochs;
}

}  // namespace

const std::vector<ColumnRole>& column_roles() {
  static const std::vector<ColumnRole> roles = {
      {"name", {"Name", "name", "run", "run_name"}, true, "the run name"},
      {"dice", {"eval/Dice", "Dice", "dice"}, true, "the Dice metric"},
      {"mae", {"eval/MAE", "MAE", "mae"}, true, "the MAE metric"},
      {"miou", {"eval/mIoU", "mIoU", "miou"}, true, "the mIoU metric"},
      {"prompt_type",
       {"module.model.prompt_type", "model.prompt_type", "prompt_type", "prompt"},
       true,
       "the prompt type"},
      {"trainable_modules",
       {"module.model.trainable_modules", "model.trainable_modules", "trainable_modules"},
       true,
       "the list of trainable modules"},
      {"dataset", {"data_module.data.name", "data.name", "dataset"}, true, "the dataset name"},
      {"max_epochs",
       {"trainer.max_epochs", "max_epochs", "epochs"},
       true,
       "the epoch budget (0 marks a baseline)"},
      {"recipe", {"recipe", "combo.recipe"}, false, "the recipe token"},
  };
  return roles;
}

ColumnOverrides parse_column_overrides(const std::vector<std::string>& entries) {
  ColumnOverrides out;
  for (const std::string& entry : entries) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
      throw UsageError(
          fmt::format("--column '{}': expected role=column-name, e.g. dice=eval/Dice", entry));
    }
    const std::string role = entry.substr(0, eq);
    const bool known = std::any_of(column_roles().begin(), column_roles().end(),
                                   [&](const ColumnRole& r) { return role == r.role; });
    if (!known) {
      std::vector<std::string> names;
      for (const auto& r : column_roles()) names.push_back(r.role);
      throw UsageError(fmt::format("--column '{}': unknown role '{}'; roles are {}", entry, role,
                                   fmt::join(names, ", ")));
    }
    out[role] = entry.substr(eq + 1);
  }
  return out;
}

RunTable parse_wandb_csv(const std::string& text, const std::string& source,
                         const ColumnOverrides& overrides, RoleCheck check) {
  const CsvTable csv = parse_csv(text, source);
  const auto col = map_columns(csv.header, source, overrides, check);
  // Columns no role claimed carry the extras.
  enum class Extra { kState, kCreated, kRuntime, kSummary, kConfig, kSkip };
  std::vector<Extra> extra(csv.header.size(), Extra::kConfig);
  for (const auto& [role, at] : col) {
    if (at >= 0) extra[static_cast<std::size_t>(at)] = Extra::kSkip;
  }
  for (std::size_t i = 0; i < csv.header.size(); ++i) {
    if (extra[i] == Extra::kSkip) continue;
    const std::string h = lower(trim(csv.header[i]));
    extra[i] = h == "state"                            ? Extra::kState
               : h == "created"                        ? Extra::kCreated
               : h == "runtime"                        ? Extra::kRuntime
               : h.find('/') != std::string::npos      ? Extra::kSummary
               : is_bookkeeping_column(h) || h.empty() ? Extra::kSkip
                                                       : Extra::kConfig;
  }
  RunTable table;
  table.source = source;
  for (const CsvRecord& rec : csv.records) {
    auto field = [&](const char* role) -> std::string {
      const int at = col.at(role);
      return at < 0 ? std::string() : rec.fields[static_cast<std::size_t>(at)];
    };
    RunRecord run;
    run.line = rec.line;
    run.name = trim(field("name"));
    if (run.name.empty()) {
      throw InputError(file_message(source, fmt::format("line {}: empty run name in column '{}'",
                                                        rec.line, csv.header[col.at("name")])));
    }
    run.dataset = trim(field("dataset"));
    run.prompt_type = trim(field("prompt_type"));
    for (const char* key : {kDice, kMiou, kMae}) {
      const std::string cell = field(key);
      if (is_missing_value(cell)) continue;
      const auto value = parse_double(cell);
      if (!value || !std::isfinite(*value)) {
        throw InputError(file_message(
            source, fmt::format("line {}, run '{}': column '{}' has '{}', expected a number",
                                rec.line, run.name, csv.header[col.at(key)], cell)));
      }
      run.metrics[key] = *value;
    }
    const std::string epochs = field("max_epochs");
    const auto e = parse_double(epochs);
    if (check == RoleCheck::kNameOnly && is_missing_value(epochs)) {
      run.has_max_epochs = false;
    } else if (!e || *e < 0 || std::floor(*e) != *e) {
      throw InputError(file_message(
          source, fmt::format("line {}, run '{}': column '{}' has '{}', expected a whole number of "
                              "epochs (0 for a baseline)",
                              rec.line, run.name, csv.header[col.at("max_epochs")], epochs)));
    }
    if (run.has_max_epochs) run.max_epochs = static_cast<int>(*e);
    run.is_baseline = run.has_max_epochs && run.max_epochs == 0;
    run.trainable_modules =
        parse_module_list(field("trainable_modules"), source, rec.line, run.name);
    run.recipe = trim(field("recipe"));
    if (run.recipe.empty()) run.recipe = recipe_from_name(run.name, run.dataset, run.prompt_type);
    for (std::size_t i = 0; i < extra.size(); ++i) {
      const std::string cell = trim(rec.fields[i]);
      if (extra[i] == Extra::kSkip || is_missing_value(cell)) continue;
      const std::string& column = csv.header[i];
      switch (extra[i]) {
        case Extra::kState:
          run.state = cell;
          break;
        case Extra::kCreated:
          run.created = cell;
          break;
        case Extra::kRuntime:
        case Extra::kSummary: {
          const auto value = parse_double(cell);
          if (!value) {
            if (extra[i] == Extra::kSummary) break;  // text summaries are not tracked
            throw InputError(file_message(
                source, fmt::format("line {}, run '{}': column '{}' has '{}', expected seconds",
                                    rec.line, run.name, column, cell)));
          }
          if (extra[i] == Extra::kRuntime) {
            run.runtime = *value;
          } else {
            run.summary[trim(column)] = *value;
          }
          break;
        }
        case Extra::kConfig:
          run.config[trim(column)] = cell;
          break;
        case Extra::kSkip:
          break;
      }
    }
    table.runs.push_back(std::move(run));
  }
  return table;
}

RunTable read_wandb_csv(const std::filesystem::path& path, const ColumnOverrides& overrides,
                        RoleCheck check) {
  return parse_wandb_csv(read_file(path), path.string(), overrides, check);
}

namespace {

// W&B's full runs-table layout, for runs that carry more than the study's columns.
std::string format_full_csv(const RunTable& table, bool recipe_column) {
  std::set<std::string> summary_keys, config_keys;
  for (const RunRecord& run : table.runs) {
    for (const auto& [key, value] : run.summary) {
      if (key.find('/') != std::string::npos) summary_keys.insert(key);
    }
    for (const auto& [key, value] : run.config) {
      const std::string k = lower(key);
      if (is_role_spelling(key) || is_bookkeeping_column(key) || k == "state" || k == "created" ||
          k == "runtime" || key.find('/') != std::string::npos) {
        continue;
      }
      config_keys.insert(key);
    }
  }
  for (const auto& [metric, column] : kMetricColumns) summary_keys.erase(column);
  std::vector<std::string> header = {"Name", "State", "Created", "Runtime"};
  for (const auto& [metric, column] : kMetricColumns) header.push_back(column);
  header.insert(header.end(), summary_keys.begin(), summary_keys.end());
  header.insert(header.end(), std::begin(kStudyConfigColumns), std::end(kStudyConfigColumns));
  header.insert(header.end(), config_keys.begin(), config_keys.end());
  if (recipe_column) header.push_back("recipe");
  std::string out = csv_line(header);
  auto number = [](std::optional<double> v) {
    return v ? fmt::format("{}", *v) : std::string();  // shortest text that round-trips
  };
  for (const RunRecord& run : table.runs) {
    std::vector<std::string> fields = {run.name, run.state, run.created, number(run.runtime)};
    for (const auto& [metric, column] : kMetricColumns)
      fields.push_back(number(run.metric(metric)));
    for (const auto& key : summary_keys) {
      const auto it = run.summary.find(key);
      fields.push_back(it == run.summary.end() ? std::string() : number(it->second));
    }
    fields.push_back(run.prompt_type);
    fields.push_back(nlohmann::json(run.trainable_modules).dump());
    fields.push_back(run.dataset);
    fields.push_back(run.has_max_epochs ? std::to_string(run.max_epochs) : std::string());
    for (const auto& key : config_keys) {
      const auto it = run.config.find(key);
      fields.push_back(it == run.config.end() ? std::string() : it->second);
    }
    if (recipe_column) fields.push_back(run.recipe);
    out += csv_line(fields);
  }
  return out;
}

}  // namespace

std::string format_wandb_csv(const RunTable& table) {
  // The study's columns; a "recipe" column only when some recipe cannot be read back from the
  // run name, so the common case stays byte-compatible with W&B exports.
  const bool recipe_column =
      std::any_of(table.runs.begin(), table.runs.end(), [](const RunRecord& run) {
        return run.recipe != recipe_from_name(run.name, run.dataset, run.prompt_type);
      });
  std::vector<std::string> header = {"Name",
                                     "eval/Dice",
                                     "eval/MAE",
                                     "eval/mIoU",
                                     "module.model.prompt_type",
                                     "module.model.trainable_modules",
                                     "data_module.data.name",
                                     "trainer.max_epochs"};
  if (std::any_of(table.runs.begin(), table.runs.end(), has_extras)) {
    return format_full_csv(table, recipe_column);
  }
  if (recipe_column) header.push_back("recipe");
  std::string out = csv_line(header);
  auto metric = [](const RunRecord& run, const char* key) {
    const auto v = run.metric(key);
    return v ? fmt::format("{}", *v) : std::string();  // shortest text that round-trips
  };
  for (const RunRecord& run : table.runs) {
    std::vector<std::string> fields = {
        run.name,          metric(run, kDice),
        metric(run, kMae), metric(run, kMiou),
        run.prompt_type,   nlohmann::json(run.trainable_modules).dump(),
        run.dataset,       std::to_string(run.max_epochs)};
    if (recipe_column) fields.push_back(run.recipe);
    out += csv_line(fields);
  }
  return out;
}

void write_wandb_csv(const std::filesystem::path& path, const RunTable& table) {
  write_file_atomic(path, format_wandb_csv(table));
}

}  // namespace iris::track
