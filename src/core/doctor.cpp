#include "core/doctor.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace iris {
namespace {

namespace fs = std::filesystem;

Check check_blas(const EnvReport& env) {
  Check c{"BLAS", CheckStatus::kOk, "LibTorch uses " + env.blas.describe(), ""};
  switch (env.blas.kind) {
    case BlasKind::kReference:
      c.status = CheckStatus::kWarn;
      c.message += ": matrix products run about 15x slower than with OpenBLAS (measured on SAM2's "
                   "image encoder)";
      c.fix = "install OpenBLAS so Debian's libblas.so.3 points at it: "
              "apt-get install libopenblas0-pthread";
      break;
    case BlasKind::kUnknown:
      c.status = CheckStatus::kWarn;
      c.message += ": could not tell which BLAS this is";
      c.fix = "check `ldd` of libtorch_cpu.so for the BLAS it loads";
      break;
    default: break;
  }
  return c;
}

Check check_threads(const EnvReport& env) {
  Check c{"threads", CheckStatus::kOk,
          fmt::format("LibTorch uses {} thread(s) on {} hardware thread(s)", env.torch_threads,
                      env.hardware_threads),
          ""};
  if (env.hardware_threads > 0 && env.torch_threads > static_cast<int>(env.hardware_threads)) {
    c.status = CheckStatus::kWarn;
    c.message += ": more threads than cores oversubscribes the CPU";
    c.fix = fmt::format("pass --threads {} or set OMP_NUM_THREADS={}", env.hardware_threads,
                        env.hardware_threads);
  } else if (env.torch_threads == 1 && env.hardware_threads > 1) {
    c.status = CheckStatus::kWarn;
    c.message += ": only one core is used";
    c.fix = fmt::format("unset OMP_NUM_THREADS or pass --threads {}", env.hardware_threads);
  }
  return c;
}

Check check_cuda(const EnvReport& env) {
  Check c{"CUDA", CheckStatus::kOk, "", ""};
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (env.cuda_devices > 0) {
    c.message = fmt::format("{} CUDA device(s) visible", env.cuda_devices);
  } else if (!env.torch_has_cuda) {
    c.message = "this LibTorch is a CPU-only build; --device cuda is unavailable";
    c.fix = "build against the PyPI torch wheel (make build TORCH=venv) for CUDA";
  } else if (visible && std::string(visible).empty()) {
    c.status = CheckStatus::kWarn;
    c.message = "CUDA_VISIBLE_DEVICES is set but empty, which hides every GPU";
    c.fix = "unset CUDA_VISIBLE_DEVICES";
  } else if (!fs::exists("/proc/driver/nvidia/version")) {
    c.message = "no NVIDIA driver on this machine; running on CPU";
  } else {
    c.status = CheckStatus::kWarn;
    c.message = "an NVIDIA driver is loaded but LibTorch sees no device";
    c.fix = "check nvidia-smi and that the driver supports the CUDA version of this LibTorch";
  }
  return c;
}

Check check_runs_folder(const fs::path& root) {
  Check c{"runs folder", CheckStatus::kOk, "", ""};
  fs::path probe_dir = root;
  while (!probe_dir.empty() && !fs::exists(probe_dir)) probe_dir = probe_dir.parent_path();
  if (probe_dir.empty()) probe_dir = ".";
  const fs::path probe = probe_dir / fmt::format(".iris-doctor-{}", ::getpid());
  std::ofstream out(probe);
  const bool ok = static_cast<bool>(out << "x");
  out.close();
  std::error_code ec;
  fs::remove(probe, ec);
  if (ok) {
    c.message = fmt::format("{} is writable", fs::exists(root) ? root.string() : probe_dir.string() + " (runs folder will be created there)");
  } else {
    c.status = CheckStatus::kFail;
    c.message = fmt::format("cannot write into {}", probe_dir.string());
    c.fix = "choose another folder with run.root or fix its permissions";
  }
  return c;
}

Check check_atlases(const fs::path& dir) {
  Check c{"MRI atlases", CheckStatus::kOk, "", ""};
  if (fs::exists(dir / "ch2bet.nii.gz") && fs::exists(dir / "aal.nii.gz")) {
    c.message = fmt::format("found in {}", dir.string());
  } else {
    c.status = CheckStatus::kWarn;
    c.message = fmt::format("ch2bet/aal not found in {}; the demo needs them", dir.string());
    c.fix = "apt-get install mricron-data";
  }
  return c;
}

Check check_features(const EnvReport& env) {
  std::string off;
  for (const auto& comp : env.components) {
    if (!comp.enabled) off += (off.empty() ? "" : ", ") + comp.name;
  }
  if (off.empty()) return {"optional features", CheckStatus::kOk, "all on", ""};
  return {"optional features", CheckStatus::kWarn, "off in this build: " + off,
          "run scripts/install-deps.sh and reconfigure (the CMake options IRIS_WITH_* select them)"};
}

}  // namespace

std::vector<Check> run_doctor(const EnvReport& env, const DoctorOptions& options) {
  return {check_blas(env),  check_threads(env), check_cuda(env), check_runs_folder(options.runs_root),
          check_atlases(options.atlas_dir), check_features(env)};
}

std::string format_checks(const std::vector<Check>& checks) {
  std::string out;
  for (const auto& c : checks) {
    const char* tag = c.status == CheckStatus::kOk ? "ok  " : c.status == CheckStatus::kWarn ? "warn" : "FAIL";
    out += fmt::format("[{}] {}: {}\n", tag, c.name, c.message);
    if (!c.fix.empty()) out += fmt::format("       fix: {}\n", c.fix);
  }
  return out;
}

bool any_failed(const std::vector<Check>& checks) {
  for (const auto& c : checks) {
    if (c.status == CheckStatus::kFail) return true;
  }
  return false;
}

}  // namespace iris
