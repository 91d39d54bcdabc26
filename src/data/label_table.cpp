#include "data/label_table.h"

#include <ATen/ATen.h>

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

std::map<int64_t, int64_t> label_counts(const at::Tensor& labels) {
  const auto flat = labels.reshape({-1}).to(at::kLong);
  std::map<int64_t, int64_t> counts;
  if (flat.numel() == 0) return counts;
  // A histogram only while its bins stay few (label values of a few thousand classes at most).
  constexpr int64_t kMaxBins = int64_t{1} << 16;
  const int64_t lo = flat.min().item<int64_t>(), hi = flat.max().item<int64_t>();
  if (lo < 0 || hi >= kMaxBins) {
    auto [values, inverse, n] = at::_unique2(flat, /*sorted=*/true, false, /*return_counts=*/true);
    for (int64_t i = 0; i < values.numel(); ++i) {
      if (values[i].item<int64_t>() != 0) counts[values[i].item<int64_t>()] = n[i].item<int64_t>();
    }
    return counts;
  }
  const auto bins = at::bincount(flat);
  const auto* b = bins.data_ptr<int64_t>();
  for (int64_t v = 1; v < bins.numel(); ++v) {
    if (b[v] > 0) counts[v] = b[v];
  }
  return counts;
}

}  // namespace iris
