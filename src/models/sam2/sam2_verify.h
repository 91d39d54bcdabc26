// Parity check against a fixture written by the official SAM2 implementation: a config, a
// checkpoint, prompts and the official outputs (image features, each prompt's output, the
// propagated logits). Works on any fixture of that form.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace iris::models::sam2 {

struct TensorComparison {
  std::string name;
  std::vector<int64_t> shape;
  double relative_error = 0.0;  // ||ours - theirs|| / ||theirs||
  double max_abs_error = 0.0;
  bool passed = false;
};

struct VerifyReport {
  std::vector<TensorComparison> tensors;
  std::vector<std::string> unchecked;  // expected tensors this check does not produce
  double tolerance = 1e-4;
  bool passed() const;
};

// Throws InputError when the fixture is incomplete or malformed (naming the file and field).
VerifyReport verify_sam2_fixture(const std::filesystem::path& fixture_dir, double tolerance = 1e-4);

}  // namespace iris::models::sam2
