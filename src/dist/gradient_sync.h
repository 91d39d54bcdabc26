// Gradient accumulation over micro-batches and ranks whose result does not depend on how the
// global batch was split: every micro-batch's gradient is added to a float64 accumulator (sums of
// a few floats are exact there), the accumulators are summed over the ranks in ~25 MB buckets,
// and only then rounded back to the parameters' dtype. One rank with a batch of N * b and N ranks
// with b each therefore end each step with the same gradients, to the bit in practice.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "dist/process_group.h"

namespace iris::dist {

class GradientSync {
 public:
  // `dist` may be null (one process): accumulation only.
  GradientSync(std::vector<at::Tensor> parameters, DistContext* dist,
               int64_t bucket_bytes = DistContext::kBucketBytes);

  // Clears the accumulators (start of a step).
  void zero();
  // After a micro-batch's backward: moves the parameters' .grad into the accumulators.
  void accumulate();
  // Sums the accumulators over the ranks and writes them into the parameters' .grad.
  void finish();

 private:
  std::vector<at::Tensor> parameters_;
  std::vector<at::Tensor> sums_;  // float64, one per parameter
  at::Tensor reached_;            // [parameters] 1 where some micro-batch produced a gradient
  DistContext* dist_;
  int64_t bucket_bytes_;
};

}  // namespace iris::dist
