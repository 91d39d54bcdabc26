// What this binary runs on: versions, devices, the BLAS LibTorch calls, optional features.
#pragma once

#include <string>
#include <vector>

namespace iris {

enum class BlasKind { kMkl, kOpenBlas, kBlis, kReference, kUnknown };

struct BlasInfo {
  BlasKind kind = BlasKind::kUnknown;
  std::string library;  // resolved path of the loaded library, or how it is linked
  std::string describe() const;
};

// Classifies a BLAS shared library by its resolved path (Debian's alternatives put the
// reference BLAS under .../blas/ and OpenBLAS under .../openblas-*/).
BlasKind classify_blas_library(const std::string& resolved_path);
const char* blas_kind_name(BlasKind kind);

// The BLAS LibTorch actually uses: a BLAS library mapped into this process if there is one,
// else LibTorch's build configuration (the PyPI wheel links MKL statically). The environment
// variable IRIS_BLAS_LIBRARY names a library path to classify instead (for checks and tests).
BlasInfo detect_blas();

struct Component {
  std::string name;
  std::string version;  // "off" when the optional feature is compiled out
  bool enabled = true;
};

struct EnvReport {
  std::string iris_version;
  std::string build_type;
  std::string compiler;
  std::vector<Component> components;  // LibTorch first, then the libraries
  bool torch_has_cuda = false;
  int cuda_devices = 0;
  int torch_threads = 0;
  unsigned hardware_threads = 0;
  BlasInfo blas;
};

EnvReport collect_env();
std::string format_env(const EnvReport& report);

}  // namespace iris
