#include "core/device.h"

#include <fmt/format.h>

#include "core/build_info.h"
#include "core/error.h"

namespace iris {

int cuda_device_count() {
  return static_cast<int>(torch::cuda::device_count());
}

c10::Device resolve_device(const std::string& spec) {
  if (spec == "auto")
    return cuda_device_count() > 0 ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (spec.size() > 5) {
      const std::string digits = spec.substr(5);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
          digits.size() > 4) {
        throw InputError(fmt::format("--device {}: expected cuda:N with N a device index", spec));
      }
      index = std::stoi(digits);
    }
    const int count = cuda_device_count();
    if (count == 0) {
      throw InputError(fmt::format(
          "--device {}: no CUDA device is visible (LibTorch reports 0; this build {} CUDA)", spec,
          torch::cuda::is_available() || IRIS_TORCH_HAS_CUDA ? "has" : "has no"));
    }
    if (index >= count) {
      throw InputError(fmt::format("--device {}: only {} CUDA device(s) visible (0..{})", spec,
                                   count, count - 1));
    }
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw InputError(fmt::format("--device {}: expected cpu, cuda, cuda:N or auto", spec));
}

at::Tensor to_device(const at::Tensor& tensor, const c10::Device& device) {
  if (tensor.device() == device) return tensor;
  if (device.is_cuda() && tensor.is_cpu()) {
    return tensor.pin_memory().to(device, /*non_blocking=*/true);
  }
  return tensor.to(device);
}

at::Tensor to_channels_last(const at::Tensor& tensor) {
  if (tensor.dim() == 4) return tensor.contiguous(at::MemoryFormat::ChannelsLast);
  if (tensor.dim() == 5) return tensor.contiguous(at::MemoryFormat::ChannelsLast3d);
  return tensor;
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4 || p.dim() == 5) p.set_data(to_channels_last(p.data()));
  }
  for (auto& b : module.buffers()) {
    if (b.dim() == 4 || b.dim() == 5) b.set_data(to_channels_last(b.data()));
  }
}

void set_threads(int threads) {
  if (threads < 0)
    throw UsageError(fmt::format("--threads {}: expected 0 (default) or more", threads));
  if (threads > 0) torch::set_num_threads(threads);
}

}  // namespace iris
