#include "core/resources.h"

#include <fstream>
#include <string>

#include "core/build_info.h"
#if IRIS_TORCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace iris {
namespace {

double status_field_mb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == field) {
      double kb = 0;
      status >> kb;
      return kb / 1024.0;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0.0;
}

}  // namespace

double current_rss_mb() {
  return status_field_mb("VmRSS:");
}
double peak_rss_mb() {
  return status_field_mb("VmHWM:");
}

double cuda_peak_allocated_mb(const c10::Device& device) {
#if IRIS_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : c10::DeviceIndex(0);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    // Index 0 is the aggregate over small and large pools.
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);
  }
#endif
  (void)device;
  return 0.0;
}

void reset_cuda_peak(const c10::Device& device) {
#if IRIS_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index()
                                                                       : c10::DeviceIndex(0));
  }
#endif
  (void)device;
}

}  // namespace iris
