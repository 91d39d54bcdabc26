// Device and thread selection shared by every command (`--device`, `--threads`).
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace iris {

// "cpu", "cuda", "cuda:N" or "auto" (CUDA when a device is visible, else CPU). Throws InputError
// naming the spec when it is malformed or asks for a device that is not there.
c10::Device resolve_device(const std::string& spec);

// Sets LibTorch's intra-op threads; 0 leaves the default. Throws UsageError for negatives.
void set_threads(int threads);

int cuda_device_count();

}  // namespace iris
