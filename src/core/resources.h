// Process resource readings for logs and benchmarks.
#pragma once

#include <c10/core/Device.h>

namespace iris {

// Resident set size of this process now and at its peak, in MiB (Linux /proc; 0 elsewhere).
double current_rss_mb();
double peak_rss_mb();

// Peak memory allocated by LibTorch's CUDA caching allocator on `device` since the last reset, in
// MiB; 0 for CPU devices and in builds without CUDA.
double cuda_peak_allocated_mb(const c10::Device& device);
void reset_cuda_peak(const c10::Device& device);

}  // namespace iris
