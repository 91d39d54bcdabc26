// Gradient accumulation over micro-batches and ranks whose result does not depend on how the
// global batch was split: every micro-batch's gradient is added to a float64 accumulator (sums of
// a few floats are exact there), the accumulators are summed over the ranks in ~25 MB buckets,
// and only then rounded back to the parameters' dtype. One rank with a batch of N * b and N ranks
// with b each therefore end each step with the same gradients, to the bit in practice.
//
// With several ranks, the step's last backward overlaps the reduction: a post hook on each
// parameter's gradient accumulator moves its gradient into the accumulator as soon as autograd
// has produced it, and a bucket's all-reduce starts once all of its parameters are done. Buckets
// run over the parameters in reverse order (roughly backward's order; the first holds about 1 MB
// so that communication starts early) and always start in index order, so every rank issues the
// same collectives in the same order whatever its graph.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "dist/process_group.h"

namespace iris::dist {

class GradientSync {
 public:
  // `dist` may be null (one process): accumulation only. Bucket size and overlap as `dist` was
  // formed with (DistOptions).
  GradientSync(std::vector<at::Tensor> parameters, DistContext* dist);
  // `overlap`: start buckets inside the last backward (with several ranks); otherwise all of
  // them start in finish().
  GradientSync(std::vector<at::Tensor> parameters, DistContext* dist, int64_t bucket_bytes,
               bool overlap = true);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Clears the accumulators (start of a step).
  void zero();
  // Runs a micro-batch's backward from `loss` and moves its gradients into the accumulators.
  // `last`: this rank's final micro-batch of the step, whose backward may overlap the all-reduce.
  void backward(const at::Tensor& loss, bool last);
  // After a backward run by the caller: moves the parameters' .grad into the accumulators.
  void accumulate();
  // Sums the accumulators over the ranks and writes them into the parameters' .grad.
  void finish();

  int64_t buckets() const;
  // Buckets of the last finished step whose all-reduce started while backward was still running.
  int64_t overlapped_buckets() const;

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with the autograd hooks
};

}  // namespace iris::dist
