// `iris data inspect`: detect what a path holds and describe it, listing every problem found
// rather than stopping at the first.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace iris {

struct ClassCount {
  std::string group;  // label map or dataset part the class belongs to
  int64_t value = 0;
  std::string name;
  int64_t count = 0;  // voxels or pixels
};

struct InspectReport {
  std::string layout;              // e.g. "mricron atlases", "NIfTI volume"
  std::vector<std::string> facts;  // "size: 181 x 217 x 181 voxels", ...
  std::vector<ClassCount> classes;
  std::vector<std::string> problems;

  std::string to_text(std::size_t max_classes_per_group) const;
  nlohmann::json to_json() const;
};

// Throws InputError when the path does not exist or its layout is not recognised.
InspectReport inspect_path(const std::filesystem::path& path);

}  // namespace iris
