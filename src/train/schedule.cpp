#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace iris {

double LrSchedule::lr(int64_t step) const {
  if (warmup > 0 && step <= warmup) return peak * static_cast<double>(step) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double t = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  if (kind == "constant") return peak;
  if (kind == "exponential") return peak * std::pow(final_ratio, t);
  const double floor = peak * final_ratio;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * t));
}

}  // namespace iris
