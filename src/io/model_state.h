// Putting a StateDict into a module, and telling which model a checkpoint is for.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace iris::io {

struct ShapeMismatch {
  std::string name;
  std::vector<std::int64_t> checkpoint_shape;
  std::vector<std::int64_t> model_shape;
};

// What load_state_dict found: model keys absent from the checkpoint, checkpoint keys the model
// does not have, and keys present in both with different shapes.
struct LoadReport {
  std::vector<std::string> missing;
  std::vector<std::string> unexpected;
  std::vector<ShapeMismatch> mismatched;
  std::size_t loaded = 0;
  bool clean() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // One line per category, long lists truncated: "2 missing: a, b; 1 unexpected: c".
  std::string summary() const;
};

// Copies `sd` into the module's parameters and buffers (converting dtype and device). Strict:
// any missing, unexpected or mis-shaped key throws InputError listing all of them and leaves
// the module untouched. Non-strict: copies what matches and reports the rest.
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& sd, bool strict = true);

// Which model a state dict is for: SAM2 or SAM2.1 and the Hiera size.
struct ModelMatch {
  std::string family = "unknown";  // "sam2", "sam2.1" or "unknown"
  std::string size = "unknown";    // "tiny", "small", "base_plus", "large" or "unknown"
  std::int64_t trunk_blocks = 0;   // 0 when there is no Hiera trunk
  std::int64_t embed_dim = 0;
  // "SAM2.1 Hiera tiny (12 blocks, embed dim 96)", "unknown model", ...
  std::string description() const;
};

ModelMatch match_model(const StateDict& sd);

}  // namespace iris::io
