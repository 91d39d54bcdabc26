// Comparing the weights of two runs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>

#include "io/checkpoint.h"

namespace iris::test {

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

}  // namespace iris::test
