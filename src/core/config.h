// Typed configuration from YAML with `--set a.b.c=value` overrides.
//
// A config struct describes itself once, through a visitor:
//
//   struct OptimConfig {
//     double lr = 1e-3;
//     std::string name = "adamw";
//     void visit(ConfigVisitor& v) {
//       v.field("lr", lr, "peak learning rate");
//       v.choice("name", name, {"adamw", "lamb"}, "optimiser");
//     }
//   };
//
// The same description reads YAML (with unknown-key and type errors that name the file, the key
// and the closest valid key), writes the fully resolved YAML back, and lists the keys for help.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace iris {

class ConfigVisitor {
 public:
  virtual ~ConfigVisitor() = default;
  virtual void field(const char* key, bool& value, const char* help) = 0;
  virtual void field(const char* key, int& value, const char* help) = 0;
  virtual void field(const char* key, std::int64_t& value, const char* help) = 0;
  virtual void field(const char* key, double& value, const char* help) = 0;
  virtual void field(const char* key, std::string& value, const char* help) = 0;
  virtual void field(const char* key, std::vector<std::string>& value, const char* help) = 0;
  virtual void field(const char* key, std::vector<std::int64_t>& value, const char* help) = 0;
  virtual void field(const char* key, std::vector<double>& value, const char* help) = 0;
  // A string restricted to `choices`; anything else is an error listing them.
  virtual void choice(const char* key, std::string& value, std::vector<std::string> choices,
                      const char* help) = 0;
  // A nested mapping.
  virtual void section(const char* key, const std::function<void(ConfigVisitor&)>& body) = 0;
  // A list of mappings of one kind: `count` items now, item i described by `item(visitor, i)`.
  // Readers call `resize(n)` before describing the n items read; `prototype` describes a default
  // item (key listings).
  virtual void section_list(const char* key, std::size_t count,
                            const std::function<void(std::size_t)>& resize,
                            const std::function<void(ConfigVisitor&, std::size_t)>& item,
                            const std::function<void(ConfigVisitor&)>& prototype,
                            const char* help) = 0;

  template <typename T>
  void section(const char* key, T& sub) {
    section(key, [&sub](ConfigVisitor& v) { sub.visit(v); });
  }
  template <typename T>
  void section_list(const char* key, std::vector<T>& items, const char* help) {
    section_list(
        key, items.size(), [&items](std::size_t n) { items.resize(n); },
        [&items](ConfigVisitor& v, std::size_t i) { items[i].visit(v); },
        [](ConfigVisitor& v) {
          T prototype;
          prototype.visit(v);
        },
        help);
  }
};

// Where the YAML came from, for messages.
struct ConfigSource {
  std::string file;                    // "" when built from overrides alone
  std::vector<std::string> overrides;  // "a.b=c" strings in the order given
};

// Parses "a.b.c=value" and sets it into `root`, creating mappings on the way. The value is
// parsed as YAML, so `--set data.sizes=[64,64]` gives a list. Throws ConfigError.
void apply_override(YAML::Node& root, const std::string& assignment);

// Loads a YAML file (or an empty mapping if `file` is empty), applies overrides, returns the tree.
YAML::Node load_yaml_tree(const ConfigSource& source);

// Binds `tree` onto a config via its visitor. Missing keys keep their defaults; unknown keys and
// wrong types throw ConfigError.
void bind_config(const YAML::Node& tree, const ConfigSource& source,
                 const std::function<void(ConfigVisitor&)>& visit);

// The resolved config as YAML text (every field, in declaration order, with help as comments).
std::string dump_visited_config(const std::function<void(ConfigVisitor&)>& visit);

// Every key as "a.b.c  <type>  help", for `--help` style listings.
std::vector<std::string> list_config_keys(const std::function<void(ConfigVisitor&)>& visit);

// Levenshtein distance (insertions, deletions, substitutions) between two strings.
std::size_t edit_distance(const std::string& a, const std::string& b);

// The closest candidate by edit distance, if it is close enough to be a plausible typo.
std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates);

// Loads the file, applies the overrides and binds the result (load_yaml_tree + bind_config).
void load_config_into(const ConfigSource& source, const std::function<void(ConfigVisitor&)>& visit);

template <typename T>
T load_config(const ConfigSource& source) {
  T config;
  load_config_into(source, [&config](ConfigVisitor& v) { config.visit(v); });
  return config;
}

template <typename T>
std::string dump_config(const T& config) {
  T copy = config;  // visitors take mutable references; writing does not change values
  return dump_visited_config([&copy](ConfigVisitor& v) { copy.visit(v); });
}

}  // namespace iris
