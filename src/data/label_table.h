// Names of the labels of a label map, read from the text file that ships beside an atlas.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace iris {

struct LabelTable {
  std::map<int64_t, std::string> names;  // label value -> name; 0 (background) is not listed

  // The name of `value`, or `<fallback_prefix><value>` when the table does not know it.
  std::string name_of(int64_t value, const std::string& fallback_prefix) const;
};

// Reads "value name [extra...]" lines separated by spaces or tabs (mricron's aal.nii.txt has a
// third column, JHU's has two; CRLF line ends are fine). A value of 0 is skipped. Throws
// InputError naming the file and line for a line without an integer value and a name.
LabelTable read_label_table(const std::filesystem::path& path);

// Voxel count per non-zero label value of a label map (any integer values, negative or huge:
// counted by sorting when a histogram would be large, so a hostile file cannot make it allocate).
std::map<int64_t, int64_t> label_counts(const at::Tensor& labels);

}  // namespace iris
