// Learning-rate schedules: linear warmup, then cosine or exponential decay.
#pragma once

#include <cstdint>
#include <string>

namespace iris {

struct LrSchedule {
  double peak = 1e-3;
  int64_t warmup = 0;       // steps of linear warmup from peak/warmup to peak
  int64_t total = 1;        // steps in the run
  std::string kind = "cosine";  // cosine | exponential | constant
  double final_ratio = 0.05;    // cosine: lr at the end / peak; exponential: same, reached at total

  // Learning rate for step s (1-based: the first optimiser step uses lr(1)).
  double lr(int64_t step) const;
};

}  // namespace iris
