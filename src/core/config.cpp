#include "core/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>

#include "core/error.h"

namespace iris {
namespace {

std::string join_key(const std::string& prefix, const char* key) {
  return prefix.empty() ? std::string(key) : prefix + "." + key;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Where a key's value came from: the override that set it, else the file and line.
std::string origin(const ConfigSource& source, const std::string& key, const YAML::Node& node) {
  for (auto it = source.overrides.rbegin(); it != source.overrides.rend(); ++it) {
    const std::string target = it->substr(0, it->find('='));
    if (target == key || key.rfind(target + ".", 0) == 0 || target.rfind(key + ".", 0) == 0) {
      return "--set " + *it;
    }
  }
  std::string where = source.file.empty() ? std::string("config") : source.file;
  if (node.IsDefined() && node.Mark().line >= 0 && !source.file.empty()) {
    where += ":" + std::to_string(node.Mark().line + 1);
  }
  return where;
}

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

bool parse_bool(const std::string& text, bool& out) {
  const std::string t = lower(text);
  if (t == "true" || t == "yes" || t == "on") return out = true, true;
  if (t == "false" || t == "no" || t == "off") return out = false, true;
  return false;
}

bool parse_int64(const std::string& text, std::int64_t& out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

bool parse_double(const std::string& text, double& out) {
  const std::string t = lower(text);
  if (t == ".inf" || t == "+.inf") return out = std::numeric_limits<double>::infinity(), true;
  if (t == "-.inf") return out = -std::numeric_limits<double>::infinity(), true;
  if (t == ".nan") return out = std::numeric_limits<double>::quiet_NaN(), true;
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno == ERANGE || *end != '\0') return false;
  out = v;
  return true;
}

class Reader final : public ConfigVisitor {
 public:
  Reader(const YAML::Node& node, std::string prefix, const ConfigSource& source)
      : node_(node), prefix_(std::move(prefix)), source_(source) {
    if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
      const std::string key = prefix_.empty() ? "(top level)" : "'" + prefix_ + "'";
      throw ConfigError(fmt::format("{}: key {}: expected a mapping of keys, got {}",
                                    origin(source_, prefix_, node_), key, describe(node_)));
    }
  }

  void field(const char* key, bool& value, const char* help) override {
    scalar(key, "a boolean (true/false)", [&](const std::string& s) { return parse_bool(s, value); });
  }
  void field(const char* key, int& value, const char* help) override {
    scalar(key, "an integer", [&](const std::string& s) {
      std::int64_t v = 0;
      if (!parse_int64(s, v) || v < std::numeric_limits<int>::min() ||
          v > std::numeric_limits<int>::max()) {
        return false;
      }
      value = static_cast<int>(v);
      return true;
    });
  }
  void field(const char* key, std::int64_t& value, const char* help) override {
    scalar(key, "an integer", [&](const std::string& s) { return parse_int64(s, value); });
  }
  void field(const char* key, double& value, const char* help) override {
    scalar(key, "a number", [&](const std::string& s) { return parse_double(s, value); });
  }
  void field(const char* key, std::string& value, const char* help) override {
    scalar(key, "a string", [&](const std::string& s) { return value = s, true; });
  }
  void field(const char* key, std::vector<std::string>& value, const char* help) override {
    list<std::string>(key, "a list of strings", value,
                      [](const std::string& s, std::string& out) { return out = s, true; });
  }
  void field(const char* key, std::vector<std::int64_t>& value, const char* help) override {
    list<std::int64_t>(key, "a list of integers", value, parse_int64);
  }
  void field(const char* key, std::vector<double>& value, const char* help) override {
    list<double>(key, "a list of numbers", value, parse_double);
  }
  void choice(const char* key, std::string& value, std::vector<std::string> choices,
              const char* help) override {
    std::string expected = "one of";
    for (std::size_t i = 0; i < choices.size(); ++i) {
      expected += (i ? ", " : " ") + choices[i];
    }
    scalar(key, expected.c_str(), [&](const std::string& s) {
      if (std::find(choices.begin(), choices.end(), s) == choices.end()) return false;
      value = s;
      return true;
    });
  }
  void section(const char* key, const std::function<void(ConfigVisitor&)>& body) override {
    known_.emplace_back(key);
    Reader child(child_node(key), join_key(prefix_, key), source_);
    body(child);
    child.finish();
  }
  void section_list(const char* key, std::size_t, const std::function<void(std::size_t)>& resize,
                    const std::function<void(ConfigVisitor&, std::size_t)>& item,
                    const std::function<void(ConfigVisitor&)>&, const char*) override {
    known_.emplace_back(key);
    const YAML::Node node = child_node(key);
    if (!node.IsDefined() || node.IsNull()) return;
    const std::string full = join_key(prefix_, key);
    if (!node.IsSequence()) {
      throw ConfigError(fmt::format("{}: key '{}': expected a list of mappings, got {}",
                                    origin(source_, full, node), full, describe(node)));
    }
    resize(node.size());
    for (std::size_t i = 0; i < node.size(); ++i) {
      Reader child(node[i], fmt::format("{}[{}]", full, i), source_);
      item(child, i);
      child.finish();
    }
  }

  // Rejects keys that no field claimed, suggesting the closest valid one.
  void finish() const {
    if (!node_.IsDefined() || !node_.IsMap()) return;
    for (const auto& item : node_) {
      const std::string key = item.first.Scalar();
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      const std::string full = join_key(prefix_, key.c_str());
      std::string message =
          fmt::format("{}: unknown key '{}'", origin(source_, full, item.first), full);
      if (auto best = closest_match(key, known_)) {
        message += fmt::format("; did you mean '{}'?", join_key(prefix_, best->c_str()));
      } else {
        std::string valid;
        for (const auto& k : known_) valid += (valid.empty() ? "" : ", ") + k;
        message += fmt::format("; valid keys {}: {}",
                               prefix_.empty() ? "at the top level" : "under '" + prefix_ + "'",
                               valid.empty() ? "(none)" : valid);
      }
      throw ConfigError(message);
    }
  }

 private:
  YAML::Node child_node(const char* key) const {
    if (!node_.IsDefined() || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    for (const auto& item : node_) {
      if (item.first.Scalar() == key) return item.second;
    }
    return YAML::Node(YAML::NodeType::Undefined);
  }

  template <typename Parse>
  void scalar(const char* key, const char* expected, Parse parse) {
    known_.emplace_back(key);
    const YAML::Node node = child_node(key);
    if (!node.IsDefined()) return;
    const std::string full = join_key(prefix_, key);
    if (!node.IsScalar() || !parse(node.Scalar())) {
      throw ConfigError(fmt::format("{}: key '{}': expected {}, got {}", origin(source_, full, node),
                                    full, expected, describe(node)));
    }
  }

  template <typename T, typename Parse>
  void list(const char* key, const char* expected, std::vector<T>& value, Parse parse) {
    known_.emplace_back(key);
    const YAML::Node node = child_node(key);
    if (!node.IsDefined()) return;
    const std::string full = join_key(prefix_, key);
    std::vector<T> out;
    bool ok = node.IsSequence();
    if (ok) {
      for (const auto& element : node) {
        T v{};
        if (!element.IsScalar() || !parse(element.Scalar(), v)) {
          ok = false;
          break;
        }
        out.push_back(v);
      }
    }
    if (!ok) {
      throw ConfigError(fmt::format("{}: key '{}': expected {}, got {}", origin(source_, full, node),
                                    full, expected, node.IsSequence() ? "a list with other items" : describe(node)));
    }
    value = std::move(out);
  }

  YAML::Node node_;
  std::string prefix_;
  const ConfigSource& source_;
  std::vector<std::string> known_;
};

std::string format_double(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  std::string s = fmt::format("{}", v);
  // Keep a float looking like a float so the file documents the type.
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

class Writer final : public ConfigVisitor {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}
  void field(const char* key, bool& value, const char* help) override {
    emit(key, value ? "true" : "false", help);
  }
  void field(const char* key, int& value, const char* help) override {
    emit(key, std::to_string(value), help);
  }
  void field(const char* key, std::int64_t& value, const char* help) override {
    emit(key, std::to_string(value), help);
  }
  void field(const char* key, double& value, const char* help) override {
    emit(key, format_double(value), help);
  }
  void field(const char* key, std::string& value, const char* help) override {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value;
    comment(help);
  }
  void field(const char* key, std::vector<std::string>& value, const char* help) override {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& v : value) out_ << YAML::DoubleQuoted << v;
    out_ << YAML::EndSeq;
    comment(help);
  }
  void field(const char* key, std::vector<std::int64_t>& value, const char* help) override {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (auto v : value) out_ << std::to_string(v);
    out_ << YAML::EndSeq;
    comment(help);
  }
  void field(const char* key, std::vector<double>& value, const char* help) override {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (auto v : value) out_ << format_double(v);
    out_ << YAML::EndSeq;
    comment(help);
  }
  void choice(const char* key, std::string& value, std::vector<std::string>, const char* help) override {
    field(key, value, help);
  }
  void section(const char* key, const std::function<void(ConfigVisitor&)>& body) override {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    body(*this);
    out_ << YAML::EndMap;
  }
  void section_list(const char* key, std::size_t count, const std::function<void(std::size_t)>&,
                    const std::function<void(ConfigVisitor&, std::size_t)>& item,
                    const std::function<void(ConfigVisitor&)>&, const char* help) override {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginSeq;
    for (std::size_t i = 0; i < count; ++i) {
      out_ << YAML::BeginMap;
      item(*this, i);
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
    comment(help);
  }

 private:
  void emit(const char* key, const std::string& text, const char* help) {
    out_ << YAML::Key << key << YAML::Value << text;
    comment(help);
  }
  void comment(const char* help) {
    if (help && *help) out_ << YAML::Comment(help);
  }
  YAML::Emitter& out_;
};

class Lister final : public ConfigVisitor {
 public:
  explicit Lister(std::vector<std::string>& rows, std::string prefix = "")
      : rows_(rows), prefix_(std::move(prefix)) {}
  void field(const char* k, bool&, const char* h) override { add(k, "bool", h); }
  void field(const char* k, int&, const char* h) override { add(k, "int", h); }
  void field(const char* k, std::int64_t&, const char* h) override { add(k, "int", h); }
  void field(const char* k, double&, const char* h) override { add(k, "float", h); }
  void field(const char* k, std::string&, const char* h) override { add(k, "string", h); }
  void field(const char* k, std::vector<std::string>&, const char* h) override { add(k, "[string]", h); }
  void field(const char* k, std::vector<std::int64_t>&, const char* h) override { add(k, "[int]", h); }
  void field(const char* k, std::vector<double>&, const char* h) override { add(k, "[float]", h); }
  void choice(const char* k, std::string&, std::vector<std::string> c, const char* h) override {
    std::string type;
    for (const auto& s : c) type += (type.empty() ? "" : "|") + s;
    add(k, type, h);
  }
  void section(const char* key, const std::function<void(ConfigVisitor&)>& body) override {
    Lister child(rows_, join_key(prefix_, key));
    body(child);
  }
  void section_list(const char* key, std::size_t, const std::function<void(std::size_t)>&,
                    const std::function<void(ConfigVisitor&, std::size_t)>&,
                    const std::function<void(ConfigVisitor&)>& prototype,
                    const char* help) override {
    add(key, "list", help);
    Lister child(rows_, join_key(prefix_, key) + "[]");
    prototype(child);
  }

 private:
  void add(const char* key, const std::string& type, const char* help) {
    rows_.push_back(fmt::format("{}  <{}>  {}", join_key(prefix_, key), type, help ? help : ""));
  }
  std::vector<std::string>& rows_;
  std::string prefix_;
};

}  // namespace

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(lower(word), lower(c));
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  if (!best || best_distance > limit) return std::nullopt;
  return best;
}

void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(fmt::format("--set {}: expected KEY=VALUE, e.g. train.lr=0.001", assignment));
  }
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = text.empty() ? YAML::Node(std::string()) : YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("--set {}: the value is not valid YAML: {}", assignment, e.msg));
  }
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& p : parts) {
    if (p.empty()) throw ConfigError(fmt::format("--set {}: empty key segment in '{}'", assignment, key));
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  // yaml-cpp nodes are handles: walk by reassigning to children.
  std::vector<YAML::Node> chain{root};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node child = chain.back()[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      child = chain.back()[parts[i]];
    } else if (!child.IsMap()) {
      std::string prefix;
      for (std::size_t j = 0; j <= i; ++j) prefix += (j ? "." : "") + parts[j];
      throw ConfigError(fmt::format("--set {}: '{}' is a value, not a section", assignment, prefix));
    }
    chain.push_back(child);
  }
  chain.back()[parts.back()] = value;
}

YAML::Node load_yaml_tree(const ConfigSource& source) {
  YAML::Node root(YAML::NodeType::Map);
  if (!source.file.empty()) {
    try {
      root = YAML::LoadFile(source.file);
    } catch (const YAML::BadFile&) {
      throw ConfigError(file_message(source.file, "cannot open the config file"));
    } catch (const YAML::ParserException& e) {
      throw ConfigError(fmt::format("{}:{}: not valid YAML: {}", source.file, e.mark.line + 1, e.msg));
    }
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) {
      throw ConfigError(file_message(source.file, "expected a mapping of keys at the top level"));
    }
  }
  for (const auto& assignment : source.overrides) apply_override(root, assignment);
  return root;
}

void bind_config(const YAML::Node& tree, const ConfigSource& source,
                 const std::function<void(ConfigVisitor&)>& visit) {
  Reader reader(tree, "", source);
  visit(reader);
  reader.finish();
}

void load_config_into(const ConfigSource& source, const std::function<void(ConfigVisitor&)>& visit) {
  bind_config(load_yaml_tree(source), source, visit);
}

std::string dump_visited_config(const std::function<void(ConfigVisitor&)>& visit) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Writer writer(out);
  visit(writer);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> list_config_keys(const std::function<void(ConfigVisitor&)>& visit) {
  std::vector<std::string> rows;
  Lister lister(rows);
  visit(lister);
  return rows;
}

}  // namespace iris
