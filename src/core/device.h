// Device and thread selection shared by every command (`--device`, `--threads`).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace torch::nn {
class Module;
}

namespace iris {

// "cpu", "cuda", "cuda:N" or "auto" (CUDA when a device is visible, else CPU). Throws InputError
// naming the spec when it is malformed or asks for a device that is not there.
c10::Device resolve_device(const std::string& spec);

// Sets LibTorch's intra-op threads; 0 leaves the default. Throws UsageError for negatives.
void set_threads(int threads);

int cuda_device_count();

// Host -> device copy of a step's inputs. On CUDA the tensor is staged in pinned host memory and
// copied asynchronously (the caching host allocator keeps the staging buffer alive until the copy
// is done); elsewhere, and for tensors already on `device`, a plain .to().
at::Tensor to_device(const at::Tensor& tensor, const c10::Device& device);

// The channels-last layout of a 4D (ChannelsLast) or 5D (ChannelsLast3d) tensor; others as is.
at::Tensor to_channels_last(const at::Tensor& tensor);
// Converts a module's 4D/5D parameters and buffers in place (cuDNN's faster layout for convolutions
// under autocast). State dicts are unaffected: values and shapes stay the same.
void to_channels_last(torch::nn::Module& module);

}  // namespace iris
