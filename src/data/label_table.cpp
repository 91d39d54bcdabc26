#include "data/label_table.h"

#include <fmt/format.h>

#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"

namespace iris {

std::string LabelTable::name_of(int64_t value, const std::string& fallback_prefix) const {
  const auto it = names.find(value);
  return it != names.end() ? it->second : fallback_prefix + std::to_string(value);
}

LabelTable read_label_table(const std::filesystem::path& path) {
  LabelTable table;
  std::istringstream in(read_file(path));
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string value_text, name;
    fields >> value_text >> name;
    char* end = nullptr;
    const long long value = std::strtoll(value_text.c_str(), &end, 10);
    if (value_text.empty() || *end != '\0' || name.empty()) {
      throw InputError(fmt::format("{}:{}: expected '<label value> <name>', got '{}'", path.string(),
                                   line_number, line));
    }
    if (value != 0) table.names[value] = name;
  }
  return table;
}

}  // namespace iris
