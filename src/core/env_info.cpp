#include "core/env_info.h"

#include <CLI/Version.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/version.h>
#include <torch/version.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/build_info.h"
#include "core/device.h"

#if IRIS_HAVE_OPENCV
#include <opencv2/core/version.hpp>
#endif
#if IRIS_HAVE_SQLITE
#include <sqlite3.h>
#endif

namespace iris {
namespace {

bool contains(const std::string& haystack, const char* needle) {
  return haystack.find(needle) != std::string::npos;
}

// The first mapped shared library that looks like a BLAS, resolved through symlinks.
std::string mapped_blas_library() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = std::filesystem::path(path).filename().string();
    if (file.rfind("libblas", 0) == 0 || file.rfind("libopenblas", 0) == 0 ||
        file.rfind("libblis", 0) == 0 || file.rfind("libmkl_rt", 0) == 0 ||
        file.rfind("libcblas", 0) == 0) {
      return path;
    }
  }
  return {};
}

std::string torch_version() {
#ifdef TORCH_VERSION
  return TORCH_VERSION;
#else
  return fmt::format("{}.{}.{}", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
#endif
}

}  // namespace

const char* blas_kind_name(BlasKind kind) {
  switch (kind) {
    case BlasKind::kMkl: return "MKL";
    case BlasKind::kOpenBlas: return "OpenBLAS";
    case BlasKind::kBlis: return "BLIS";
    case BlasKind::kReference: return "reference BLAS (Netlib)";
    case BlasKind::kUnknown: return "unknown";
  }
  return "unknown";
}

std::string BlasInfo::describe() const { return fmt::format("{} ({})", blas_kind_name(kind), library); }

BlasKind classify_blas_library(const std::string& resolved_path) {
  std::error_code ec;
  std::string path = resolved_path;
  const auto canonical = std::filesystem::canonical(resolved_path, ec);
  if (!ec) path = canonical.string();
  if (contains(path, "openblas")) return BlasKind::kOpenBlas;
  if (contains(path, "mkl")) return BlasKind::kMkl;
  if (contains(path, "blis")) return BlasKind::kBlis;
  const std::string file = std::filesystem::path(path).filename().string();
  if (file.rfind("libblas", 0) == 0 || file.rfind("libcblas", 0) == 0) return BlasKind::kReference;
  return BlasKind::kUnknown;
}

BlasInfo detect_blas() {
  BlasInfo info;
  if (const char* forced = std::getenv("IRIS_BLAS_LIBRARY"); forced && *forced) {
    info.library = forced;
    info.kind = classify_blas_library(forced);
    return info;
  }
  if (std::string mapped = mapped_blas_library(); !mapped.empty()) {
    info.library = mapped;
    info.kind = classify_blas_library(mapped);
    return info;
  }
  const std::string config = at::show_config();
  if (contains(config, "BLAS_INFO=mkl")) {
    info.kind = BlasKind::kMkl;
    info.library = "linked into LibTorch";
  } else if (contains(config, "BLAS_INFO=open")) {
    info.kind = BlasKind::kOpenBlas;
    info.library = "linked into LibTorch";
  } else {
    info.library = "not found among loaded libraries";
  }
  return info;
}

EnvReport collect_env() {
  EnvReport r;
  r.iris_version = build::kVersion;
  r.build_type = build::kBuildType;
  r.compiler = build::kCompiler;
  r.torch_has_cuda = build::kTorchHasCuda;
  r.cuda_devices = cuda_device_count();
  r.torch_threads = torch::get_num_threads();
  r.hardware_threads = std::thread::hardware_concurrency();
  r.blas = detect_blas();

  r.components.push_back({"LibTorch", torch_version() + (r.torch_has_cuda ? " (CUDA build)" : " (CPU build)")});
  r.components.push_back({"yaml-cpp", IRIS_YAML_CPP_VERSION});
  r.components.push_back({"nlohmann-json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR,
                                                       NLOHMANN_JSON_VERSION_MINOR,
                                                       NLOHMANN_JSON_VERSION_PATCH)});
  r.components.push_back({"CLI11", CLI11_VERSION});
  r.components.push_back({"spdlog", fmt::format("{}.{}.{}", SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH)});
  r.components.push_back({"fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100)});
#if IRIS_HAVE_OPENCV
  r.components.push_back({"OpenCV", CV_VERSION});
#else
  r.components.push_back({"OpenCV", "off", false});
#endif
#if IRIS_HAVE_NIFTI
  r.components.push_back({"niftilib", "nifti2_io"});
#else
  r.components.push_back({"niftilib", "off", false});
#endif
#if IRIS_HAVE_PLOT
  r.components.push_back({"PLplot", IRIS_PLPLOT_VERSION});
#else
  r.components.push_back({"PLplot", "off", false});
#endif
#if IRIS_HAVE_SQLITE
  r.components.push_back({"SQLite", sqlite3_libversion()});
#else
  r.components.push_back({"SQLite", "off", false});
#endif
#if IRIS_HAVE_DIST
  r.components.push_back({"c10d", IRIS_HAVE_NCCL ? "Gloo, NCCL" : "Gloo"});
#else
  r.components.push_back({"c10d", "off", false});
#endif
  return r;
}

std::string format_env(const EnvReport& r) {
  std::string out = fmt::format("IRIS {} ({}, {})\n", r.iris_version, r.build_type, r.compiler);
  for (const auto& c : r.components) out += fmt::format("  {:<14} {}\n", c.name, c.version);
  out += fmt::format("devices:\n  {:<14} {} threads (LibTorch), {} hardware threads\n", "cpu",
                     r.torch_threads, r.hardware_threads);
  out += fmt::format("  {:<14} {}\n", "cuda",
                     r.cuda_devices > 0 ? fmt::format("{} device(s)", r.cuda_devices)
                     : r.torch_has_cuda ? std::string("none visible")
                                        : std::string("not in this LibTorch build"));
  out += fmt::format("BLAS:\n  {}\n", r.blas.describe());
  out += "features:\n";
  for (const auto& c : r.components) {
    if (c.name == "OpenCV" || c.name == "niftilib" || c.name == "PLplot" || c.name == "SQLite" ||
        c.name == "c10d") {
      out += fmt::format("  {:<14} {}\n", c.name, c.enabled ? "on" : "off");
    }
  }
  return out;
}

}  // namespace iris
