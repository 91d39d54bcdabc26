#include "track/run_store.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <set>
#include <tuple>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/config.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "track/wandb_csv.h"

#if IRIS_HAVE_SQLITE
#include <sqlite3.h>
#endif

namespace iris::track {

namespace {

// A run without summary.json that wrote nothing for this long is taken as crashed.
constexpr double kRunningWindowSeconds = 15 * 60;
constexpr int kSchemaVersion = 1;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Modification time in nanoseconds since the epoch; 0 when the file does not exist.
std::int64_t mtime_ns(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

std::string iso_utc(double seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// A folder as the store keeps it: the record plus what staleness and state need.
struct FolderRow {
  RunRecord record;
  std::int64_t stamp_ns = 0;   // newest modification of the folder's files
  double started_s = 0;        // when config.yaml was written
  bool derived_state = false;  // state inferred from file times, not written by the run
  std::int64_t order = 0;      // line in the import source; keeps imported runs in file order
};

std::int64_t folder_stamp(const fs::path& folder) {
  std::int64_t stamp = mtime_ns(folder);
  for (const char* file : {"config.yaml", "summary.json", "metrics.jsonl", "log.txt"}) {
    stamp = std::max(stamp, mtime_ns(folder / file));
  }
  return stamp;
}

// Running runs age into crashed ones; their runtime grows until then.
void refresh_derived_state(FolderRow& row, double now) {
  if (!row.derived_state) return;
  const double last = static_cast<double>(row.stamp_ns) * 1e-9;
  const bool running = now - last < kRunningWindowSeconds;
  row.record.state = running ? "running" : "crashed";
  row.record.runtime = std::max(0.0, (running ? now : last) - row.started_s);
}

// --- YAML <-> flat dotted keys ---------------------------------------------------------------

nlohmann::json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      auto out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item));
      return out;
    }
    case YAML::NodeType::Map: {
      auto out = nlohmann::json::object();
      for (const auto& kv : node) out[kv.first.Scalar()] = yaml_to_json(kv.second);
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted in the file: a string
      if (s == "true" || s == "false") return s == "true";
      std::int64_t i = 0;
      if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
          ec == std::errc() && p == s.data() + s.size() && !s.empty()) {
        return i;
      }
      double d = 0;
      if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
          ec == std::errc() && p == s.data() + s.size() && !s.empty()) {
        return d;
      }
      return s;
    }
    default:
      return nullptr;
  }
}

void flatten_into(const YAML::Node& node, const std::string& prefix,
                  std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      flatten_into(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else if (node.IsSequence()) {
    out[prefix] = yaml_to_json(node).dump();
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else if (!prefix.empty()) {
    out[prefix] = "null";
  }
}

YAML::Node json_to_yaml(const nlohmann::json& j) {
  if (j.is_array()) {
    YAML::Node seq(YAML::NodeType::Sequence);
    for (const auto& item : j) seq.push_back(json_to_yaml(item));
    return seq;
  }
  if (j.is_object()) {
    YAML::Node map(YAML::NodeType::Map);
    for (const auto& [k, v] : j.items()) map[k] = json_to_yaml(v);
    return map;
  }
  if (j.is_string()) return YAML::Node(j.get<std::string>());
  if (j.is_null()) return YAML::Node(YAML::NodeType::Null);
  return YAML::Node(j.dump());
}

// --- reading a folder -------------------------------------------------------------------------

// The first of `keys` present in `config` (case-insensitive).
const std::string* config_value(const std::map<std::string, std::string>& config,
                                std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    for (const auto& [k, v] : config) {
      if (lower(k) == lower(key)) return &v;
    }
  }
  return nullptr;
}

std::optional<double> as_number(const std::string& text) {
  double v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

std::vector<std::string> as_list(const std::string& text) {
  std::vector<std::string> out;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_array()) {
    for (const auto& item : j)
      out.push_back(item.is_string() ? item.get<std::string>() : item.dump());
  } else if (!text.empty()) {
    out.push_back(text);
  }
  return out;
}

// The summary.json keys our exports and W&B use for the three metrics.
constexpr std::tuple<const char*, const char*, const char*, const char*> kMetricKeys[] = {
    {kDice, "eval/Dice", "Dice", "dice"},
    {kMiou, "eval/mIoU", "mIoU", "miou"},
    {kMae, "eval/MAE", "MAE", "mae"}};
constexpr std::pair<const char*, const char*> kTestMetricKeys[] = {
    {kDice, "test/Dice"}, {kMiou, "test/mIoU"}, {kMae, "test/MAE"}};

bool parse_flag(const std::string& text, bool& out) {
  const std::string t = lower(text);
  if (t == "true" || t == "1") return out = true, true;
  if (t == "false" || t == "0") return out = false, true;
  return false;
}

FolderRow read_folder_row(const fs::path& folder) {
  FolderRow row;
  RunRecord& r = row.record;
  r.folder = folder.filename().string();
  r.name = r.folder;
  const RunDir dir = RunDir::existing(folder);
  row.stamp_ns = folder_stamp(folder);
  const std::int64_t config_ns = mtime_ns(dir.config_path());
  row.started_s = static_cast<double>(config_ns ? config_ns : mtime_ns(folder)) * 1e-9;

  if (fs::exists(dir.config_path())) {
    r.config = flatten_yaml(read_file(dir.config_path()), dir.config_path().string());
  }
  nlohmann::json summary = nlohmann::json::object();
  const bool has_summary = fs::exists(dir.summary_path());
  if (has_summary) {
    summary = dir.read_summary();
    if (!summary.is_object()) {
      throw InputError(file_message(dir.summary_path().string(), "expected a JSON object"));
    }
  }

  // Config: the study's keys, then the spellings other configs use.
  auto text = [&](std::initializer_list<const char*> keys) {
    const std::string* v = config_value(r.config, keys);
    return v ? *v : std::string();
  };
  r.dataset =
      text({"data_module.data.name", "data.name", "dataset", "data.dataset", "data.label_map"});
  r.prompt_type = text(
      {"module.model.prompt_type", "model.prompt_type", "prompt_type", "prompt", "prompt.type"});
  r.trainable_modules = as_list(text({"module.model.trainable_modules", "model.trainable_modules",
                                      "trainable_modules", "recipe.trainable_modules"}));
  const std::string epochs =
      text({"trainer.max_epochs", "max_epochs", "epochs", "train.max_epochs"});
  const auto e = as_number(epochs);
  r.has_max_epochs = e && *e >= 0 && std::floor(*e) == *e;
  r.max_epochs = r.has_max_epochs ? static_cast<int>(*e) : 0;
  if (const auto steps = as_number(text({"trainer.max_steps", "max_steps", "optim.iterations"}))) {
    r.max_steps = static_cast<std::int64_t>(*steps);
  }
  // Runs that say what they are (`baseline:` in IRIS configs) are taken at their word; imported
  // and older runs are baselines by their zero epoch budget, as in the study's export.
  bool flagged = false;
  if (const std::string* b = config_value(r.config, {"baseline"}); b && parse_flag(*b, flagged)) {
    r.is_baseline = flagged;
  } else {
    r.is_baseline = r.has_max_epochs ? r.max_epochs == 0 : r.max_steps == std::int64_t{0};
  }
  r.recipe = text({"recipe", "combo.recipe", "recipe.name"});

  // Summary: metrics under their usual names, every other top-level number, run metadata.
  for (const auto& [key, value] : summary.items()) {
    if (value.is_number()) r.summary[key] = value.get<double>();
  }
  // A run scored on a held-out test split reports those numbers; its validation numbers (which
  // chose the epoch) stay in the summary.
  for (const auto& [metric, key] : kTestMetricKeys) {
    if (const auto it = r.summary.find(key); it != r.summary.end()) r.metrics[metric] = it->second;
  }
  const bool tested = !r.metrics.empty();
  for (const auto& [metric, a, b, c] : kMetricKeys) {
    for (const char* key : {a, b, c}) {
      const auto it = r.summary.find(key);
      if (it == r.summary.end()) continue;
      if (!r.metrics.count(metric)) r.metrics[metric] = it->second;
      if (!tested) r.summary.erase(it);
    }
  }
  if (summary.contains("imported") && summary["imported"].is_object()) {
    r.imported = true;
    row.order = summary["imported"].value("line", std::int64_t{0});
  }
  if (summary.contains("name") && summary["name"].is_string()) {
    r.name = summary["name"].get<std::string>();
  }
  if (r.recipe.empty()) r.recipe = recipe_from_name(r.name, r.dataset, r.prompt_type);
  r.created = summary.contains("created") && summary["created"].is_string()
                  ? summary["created"].get<std::string>()
                  : iso_utc(row.started_s);
  if (summary.contains("state") && summary["state"].is_string()) {
    r.state = summary["state"].get<std::string>();
  } else if (has_summary) {
    r.state = "finished";
  } else {
    row.derived_state = true;
  }
  if (const auto it = r.summary.find("runtime"); it != r.summary.end()) {
    r.runtime = it->second;
    r.summary.erase(it);
  } else if (const auto t = r.summary.find("time/seconds"); t != r.summary.end()) {
    r.runtime = t->second;
  } else if (has_summary && !r.imported) {
    r.runtime = std::max(0.0, static_cast<double>(row.stamp_ns) * 1e-9 - row.started_s);
  }
  refresh_derived_state(row, now_seconds());
  return row;
}

bool row_order(const FolderRow& a, const FolderRow& b) {
  return std::tie(a.record.created, a.order, a.record.folder) <
         std::tie(b.record.created, b.order, b.record.folder);
}

// --- runs.db ----------------------------------------------------------------------------------

#if IRIS_HAVE_SQLITE

class Db {
 public:
  Db(const fs::path& path, int flags) : path_(path) {
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      throw RuntimeFailure(file_message(path.string(), "cannot open the run index: " + msg));
    }
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      throw RuntimeFailure(file_message(path_.string(), "run index: " + msg));
    }
  }
  sqlite3* get() const { return db_; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt(Db& db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db.get(), sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw RuntimeFailure(
          file_message(db.path().string(), std::string("run index: ") + sqlite3_errmsg(db.get())));
    }
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  void text(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void real(int i, std::optional<double> v) {
    v ? sqlite3_bind_double(stmt_, i, *v) : sqlite3_bind_null(stmt_, i);
  }
  void integer(int i, std::optional<std::int64_t> v) {
    v ? sqlite3_bind_int64(stmt_, i, *v) : sqlite3_bind_null(stmt_, i);
  }
  // Runs an insert; resets for the next bindings.
  void run() {
    if (sqlite3_step(stmt_) != SQLITE_DONE) {
      throw RuntimeFailure(file_message(db_.path().string(),
                                        std::string("run index: ") + sqlite3_errmsg(db_.get())));
    }
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  bool next() { return sqlite3_step(stmt_) == SQLITE_ROW; }
  std::string col_text(int i) const {
    const auto* p = sqlite3_column_text(stmt_, i);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  std::optional<double> col_real(int i) const {
    if (sqlite3_column_type(stmt_, i) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_double(stmt_, i);
  }
  std::optional<std::int64_t> col_int(int i) const {
    if (sqlite3_column_type(stmt_, i) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(stmt_, i);
  }

 private:
  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(
  folder TEXT PRIMARY KEY, name TEXT, state TEXT, created TEXT, runtime REAL,
  dataset TEXT, prompt_type TEXT, recipe TEXT, trainable_modules TEXT,
  max_epochs INTEGER, max_steps INTEGER, is_baseline INTEGER, imported INTEGER,
  stamp_ns INTEGER, started_s REAL, derived_state INTEGER, import_order INTEGER);
CREATE TABLE config(folder TEXT, key TEXT, value TEXT, PRIMARY KEY(folder, key));
CREATE TABLE summary(folder TEXT, key TEXT, value REAL, PRIMARY KEY(folder, key));
CREATE INDEX runs_filters ON runs(dataset, prompt_type, recipe, state);
)sql";

// Rows of an existing runs.db by folder; empty when it is missing, unreadable or of another
// schema version (it is then rebuilt from the folders).
std::map<std::string, FolderRow> read_db(const fs::path& path) {
  std::map<std::string, FolderRow> rows;
  if (!fs::exists(path)) return rows;
  try {
    Db db(path, SQLITE_OPEN_READONLY);
    {
      Stmt version(db, "SELECT value FROM meta WHERE key = 'schema'");
      if (!version.next() || version.col_text(0) != std::to_string(kSchemaVersion)) return {};
    }
    Stmt runs(db,
              "SELECT folder, name, state, created, runtime, dataset, prompt_type, recipe, "
              "trainable_modules, max_epochs, max_steps, is_baseline, imported, stamp_ns, "
              "started_s, derived_state, import_order FROM runs");
    while (runs.next()) {
      FolderRow row;
      RunRecord& r = row.record;
      r.folder = runs.col_text(0);
      r.name = runs.col_text(1);
      r.state = runs.col_text(2);
      r.created = runs.col_text(3);
      r.runtime = runs.col_real(4);
      r.dataset = runs.col_text(5);
      r.prompt_type = runs.col_text(6);
      r.recipe = runs.col_text(7);
      r.trainable_modules = as_list(runs.col_text(8));
      const auto epochs = runs.col_int(9);
      r.has_max_epochs = epochs.has_value();
      r.max_epochs = static_cast<int>(epochs.value_or(0));
      r.max_steps = runs.col_int(10);
      r.is_baseline = runs.col_int(11).value_or(0) != 0;
      r.imported = runs.col_int(12).value_or(0) != 0;
      row.stamp_ns = runs.col_int(13).value_or(0);
      row.started_s = runs.col_real(14).value_or(0);
      row.derived_state = runs.col_int(15).value_or(0) != 0;
      row.order = runs.col_int(16).value_or(0);
      rows.emplace(r.folder, std::move(row));
    }
    Stmt config(db, "SELECT folder, key, value FROM config");
    while (config.next()) {
      if (auto it = rows.find(config.col_text(0)); it != rows.end()) {
        it->second.record.config[config.col_text(1)] = config.col_text(2);
      }
    }
    Stmt summary(db, "SELECT folder, key, value FROM summary");
    while (summary.next()) {
      auto it = rows.find(summary.col_text(0));
      if (it == rows.end()) continue;
      const std::string key = summary.col_text(1);
      const double value = summary.col_real(2).value_or(NAN);
      // Metrics are kept under their eval/ names, beside the other summary values.
      bool metric = false;
      for (const auto& [m, eval_key, b, c] : kMetricKeys) {
        if (key == eval_key) {
          it->second.record.metrics[m] = value;
          metric = true;
        }
      }
      if (!metric) it->second.record.summary[key] = value;
    }
  } catch (const RuntimeFailure&) {
    return {};
  }
  return rows;
}

// Writes every row into a new database next to runs.db and renames it over the old one.
void write_db(const fs::path& path, const std::vector<FolderRow>& rows) {
  const fs::path temp = fs::path(path).concat(fmt::format(".tmp{}", ::getpid()));
  fs::remove(temp);
  try {
    {
      Db db(temp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
      db.exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;");
      db.exec("BEGIN");
      db.exec(kSchema);
      {
        Stmt meta(db, "INSERT INTO meta VALUES (?, ?)");
        meta.text(1, "schema");
        meta.text(2, std::to_string(kSchemaVersion));
        meta.run();
      }
      Stmt run(db, "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
      Stmt config(db, "INSERT INTO config VALUES (?, ?, ?)");
      Stmt summary(db, "INSERT INTO summary VALUES (?, ?, ?)");
      for (const FolderRow& row : rows) {
        const RunRecord& r = row.record;
        run.text(1, r.folder);
        run.text(2, r.name);
        run.text(3, r.state);
        run.text(4, r.created);
        run.real(5, r.runtime);
        run.text(6, r.dataset);
        run.text(7, r.prompt_type);
        run.text(8, r.recipe);
        run.text(9, nlohmann::json(r.trainable_modules).dump());
        run.integer(10,
                    r.has_max_epochs ? std::optional<std::int64_t>(r.max_epochs) : std::nullopt);
        run.integer(11, r.max_steps);
        run.integer(12, r.is_baseline);
        run.integer(13, r.imported);
        run.integer(14, row.stamp_ns);
        run.real(15, row.started_s);
        run.integer(16, row.derived_state);
        run.integer(17, row.order);
        run.run();
        for (const auto& [key, value] : r.config) {
          config.text(1, r.folder);
          config.text(2, key);
          config.text(3, value);
          config.run();
        }
        auto put = [&](const std::string& key, double value) {
          summary.text(1, r.folder);
          summary.text(2, key);
          summary.real(3, value);
          summary.run();
        };
        for (const auto& [key, value] : r.summary) put(key, value);
        for (const auto& [m, eval_key, b, c] : kMetricKeys) {
          if (const auto v = r.metric(m)) put(eval_key, *v);
        }
      }
      db.exec("COMMIT");
    }
    // The index is a cache of the folders, so a lost rename after a crash costs only a rebuild.
    fs::rename(temp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(temp, ec);
    throw;
  }
}

#endif  // IRIS_HAVE_SQLITE

// Folder name for an imported run: the run name without characters a path cannot hold.
std::string folder_name_for(const std::string& name) {
  std::string out;
  for (const char c : name) out += (c == '/' || c == '\0') ? '_' : c;
  if (out.empty() || out == "." || out == "..") out = "run";
  return out;
}

}  // namespace

bool RunFilter::matches(const RunRecord& run) const {
  return (dataset.empty() || run.dataset == dataset) &&
         (prompt_type.empty() || run.prompt_type == prompt_type) &&
         (recipe.empty() || run.recipe == recipe) && (state.empty() || run.state == state);
}

std::map<std::string, std::string> flatten_yaml(const std::string& text,
                                                const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(file_message(source, std::string("not valid YAML: ") + e.what()));
  }
  std::map<std::string, std::string> out;
  if (root.IsNull()) return out;
  if (!root.IsMap()) throw InputError(file_message(source, "expected a mapping of config keys"));
  flatten_into(root, "", out);
  return out;
}

std::string nest_yaml(const std::map<std::string, std::string>& flat) {
  YAML::Node root(YAML::NodeType::Map);
  for (const auto& [key, value] : flat) {
    YAML::Node leaf;
    const auto json = nlohmann::json::parse(value, nullptr, false);
    leaf = !json.is_discarded() && json.is_array() ? json_to_yaml(json) : YAML::Node(value);
    // Nest along the dots unless a shorter key already holds a value there; then keep the
    // dotted key whole (it flattens back to the same key).
    std::vector<std::string> parts;
    for (std::size_t start = 0;;) {
      const std::size_t dot = key.find('.', start);
      parts.push_back(key.substr(start, dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    bool nested =
        std::none_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); });
    if (nested) {
      YAML::Node node = root;
      for (std::size_t i = 0; i + 1 < parts.size() && nested; ++i) {
        YAML::Node child = node[parts[i]];
        if (!child.IsDefined() || child.IsNull()) {
          node[parts[i]] = YAML::Node(YAML::NodeType::Map);
        } else if (!child.IsMap()) {
          nested = false;
          break;
        }
        node.reset(node[parts[i]]);
      }
      if (nested && !node[parts.back()].IsDefined()) {
        node[parts.back()] = leaf;
        continue;
      }
    }
    root[key] = leaf;
  }
  YAML::Emitter emitter;
  emitter << root;
  return std::string(emitter.c_str()) + "\n";
}

bool is_run_folder(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return false;
  for (const char* file : {"config.yaml", "summary.json", "metrics.jsonl"}) {
    if (fs::exists(folder / file, ec)) return true;
  }
  return false;
}

RunRecord read_run_folder(const fs::path& folder) {
  return read_folder_row(folder).record;
}

std::map<std::string, LastMetric> last_metrics(const fs::path& folder) {
  std::map<std::string, LastMetric> out;
  for (const auto& row : RunDir::existing(folder).read_metrics()) {
    if (!row.is_object()) continue;
    const std::int64_t step =
        row.contains("step") && row["step"].is_number() ? row["step"].get<std::int64_t>() : -1;
    for (const auto& [key, value] : row.items()) {
      if (key != "step" && value.is_number()) out[key] = {value.get<double>(), step};
    }
  }
  return out;
}

std::vector<std::string> closest_names(const std::string& word,
                                       const std::vector<std::string>& candidates, std::size_t n) {
  std::vector<std::pair<std::size_t, std::string>> ranked;
  for (const auto& c : candidates) ranked.emplace_back(edit_distance(lower(word), lower(c)), c);
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::string> out;
  for (const auto& [d, c] : ranked) {
    if (out.size() == n) break;
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

RunTable to_run_table(std::vector<RunRecord> runs, const std::string& source) {
  RunTable table;
  table.source = source;
  table.runs = std::move(runs);
  return table;
}

RunStore::RunStore(fs::path root) : root_(std::move(root)) {}

RunScan RunStore::scan(bool rebuild) const {
  RunScan scan;
  std::vector<fs::path> folders;
  std::error_code ec;
  if (fs::is_directory(root_, ec)) {
    for (const auto& entry : fs::directory_iterator(root_, ec)) {
      if (is_run_folder(entry.path())) folders.push_back(entry.path());
    }
  }
  std::sort(folders.begin(), folders.end());

  std::map<std::string, FolderRow> indexed;
#if IRIS_HAVE_SQLITE
  scan.indexed = true;
  if (!rebuild) indexed = read_db(db_path());
#endif
  const double now = now_seconds();
  std::vector<FolderRow> rows;
  bool changed = rebuild;
  for (const fs::path& folder : folders) {
    const std::string name = folder.filename().string();
    const auto it = indexed.find(name);
    if (it != indexed.end() && it->second.stamp_ns == folder_stamp(folder)) {
      refresh_derived_state(it->second, now);
      rows.push_back(std::move(it->second));
      indexed.erase(it);
      continue;
    }
    changed = true;
    ++scan.reread;
    try {
      rows.push_back(read_folder_row(folder));
    } catch (const InputError& e) {
      scan.problems.push_back({name, e.what()});
    }
  }
  changed |= !indexed.empty();  // folders that were removed
#if IRIS_HAVE_SQLITE
  if ((changed || !fs::exists(db_path())) && fs::is_directory(root_)) {
    try {
      write_db(db_path(), rows);
      scan.db_written = true;
    } catch (const RuntimeFailure& e) {
      // A read-only runs folder can still be listed from its folders.
      scan.problems.push_back({db_path().filename().string(), e.what()});
    }
  }
#else
  (void)changed;
#endif
  std::sort(rows.begin(), rows.end(), row_order);
  for (auto& row : rows) scan.runs.push_back(std::move(row.record));
  return scan;
}

std::vector<RunRecord> RunStore::list(const RunFilter& filter, bool rebuild) const {
  std::vector<RunRecord> out;
  for (auto& run : scan(rebuild).runs) {
    if (filter.matches(run)) out.push_back(std::move(run));
  }
  return out;
}

RunRecord RunStore::find(const std::string& name) const {
  const std::vector<RunRecord> runs = scan().runs;
  for (const RunRecord& run : runs) {
    if (run.folder == name) return run;
  }
  std::vector<const RunRecord*> by_name;
  for (const RunRecord& run : runs) {
    if (run.name == name) by_name.push_back(&run);
  }
  if (by_name.size() == 1) return *by_name.front();
  if (by_name.size() > 1) {
    std::vector<std::string> folders;
    for (const RunRecord* r : by_name) folders.push_back(r->folder);
    throw InputError(file_message(
        root_.string(), fmt::format("{} runs are named '{}'; give one of their folders: {}",
                                    by_name.size(), name, fmt::join(folders, ", "))));
  }
  std::vector<std::string> names;
  for (const RunRecord& run : runs) {
    names.push_back(run.folder);
    if (run.name != run.folder) names.push_back(run.name);
  }
  if (names.empty()) {
    throw InputError(file_message(root_.string(), fmt::format("no run '{}': there are no runs "
                                                              "here",
                                                              name)));
  }
  throw InputError(
      file_message(root_.string(), fmt::format("no run '{}'; closest: {}", name,
                                               fmt::join(closest_names(name, names, 3), ", "))));
}

ImportResult RunStore::import_runs(const RunTable& table, const std::string& source) const {
  ImportResult result;
  std::vector<RunRecord> existing = scan().runs;
  std::set<std::string> taken;
  for (const RunRecord& run : existing) taken.insert(run.folder);
  const std::string now = iso_utc(now_seconds());

  for (const RunRecord& run : table.runs) {
    // Config: the run's extra columns plus the study's role columns, so the folder reads back
    // into the same record.
    std::map<std::string, std::string> config = run.config;
    if (!run.dataset.empty()) config["data_module.data.name"] = run.dataset;
    if (!run.prompt_type.empty()) config["module.model.prompt_type"] = run.prompt_type;
    if (!run.trainable_modules.empty()) {
      config["module.model.trainable_modules"] = nlohmann::json(run.trainable_modules).dump();
    }
    if (run.has_max_epochs) config["trainer.max_epochs"] = std::to_string(run.max_epochs);
    if (run.recipe != recipe_from_name(run.name, run.dataset, run.prompt_type)) {
      config["recipe"] = run.recipe;
    }
    nlohmann::json summary = nlohmann::json::object();
    for (const auto& [key, value] : run.summary) summary[key] = value;
    for (const auto& [m, eval_key, b, c] : kMetricKeys) {
      if (const auto v = run.metric(m)) summary[eval_key] = *v;
    }
    summary["name"] = run.name;
    summary["state"] = run.state.empty() ? "finished" : run.state;
    summary["created"] = run.created.empty() ? now : run.created;
    if (run.runtime) summary["runtime"] = *run.runtime;
    summary["imported"] = {{"source", source}, {"line", run.line}, {"at", now}};

    // Same name, state, config and numbers as an earlier import: nothing new.
    const bool duplicate = std::any_of(existing.begin(), existing.end(), [&](const RunRecord& e) {
      if (!e.imported || e.name != run.name || e.metrics != run.metrics) return false;
      if (e.state != summary["state"].get<std::string>()) return false;
      std::map<std::string, double> summary_numbers;
      for (const auto& [key, value] : run.summary) summary_numbers[key] = value;
      if (e.summary != summary_numbers) return false;
      return flatten_yaml(nest_yaml(config), "") == e.config;
    });
    if (duplicate) {
      result.skipped.push_back(run.name);
      continue;
    }
    std::string folder = folder_name_for(run.name);
    for (int n = 2; taken.count(folder); ++n)
      folder = fmt::format("{}-{}", folder_name_for(run.name), n);
    taken.insert(folder);
    const RunDir dir = RunDir::open(root_, folder, RunDir::Mode::kCreate);
    dir.write_config(nest_yaml(config));
    dir.write_summary(summary);
    result.created.push_back(folder);
  }
  return result;
}

}  // namespace iris::track
