// Comparing the weights of two runs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>

#include "io/checkpoint.h"

namespace iris::test {

namespace fs = std::filesystem;

// Largest |a - b| / max|a| over the tensors of two state dicts; a tensor missing from `b` fails
// the test.
inline double max_relative_difference(const io::StateDict& a, const io::StateDict& b) {
  double worst = 0;
  for (const auto& [name, x] : a) {
    const auto* y = b.find(name);
    EXPECT_NE(y, nullptr) << name;
    if (y == nullptr) continue;
    const double scale = std::max(x.abs().max().item<double>(), 1e-12);
    worst = std::max(worst,
                     (x.to(at::kDouble) - y->to(at::kDouble)).abs().max().item<double>() / scale);
  }
  return worst;
}

// The last weights of two SAM2 runs that started from `checkpoint` (official format): training
// moved them, and the two runs agree within 1e-6 relative. Prints the difference, labelled `what`.
inline void expect_same_trained_weights(const fs::path& checkpoint, const fs::path& run_a,
                                        const fs::path& run_b, const std::string& what) {
  const auto start = io::select_state_dict(io::read_checkpoint(checkpoint).root, "", "ckpt");
  const auto a = io::read_safetensors(run_a / "checkpoints/last.safetensors").tensors;
  const auto b = io::read_safetensors(run_b / "checkpoints/last.safetensors").tensors;
  EXPECT_GT(max_relative_difference(start, a), 1e-4) << "the steps changed the weights";
  const double diff = max_relative_difference(a, b);
  std::cout << "[measure] max relative weight difference, " << what << ": " << diff << "\n";
  EXPECT_LE(diff, 1e-6);
}

}  // namespace iris::test
