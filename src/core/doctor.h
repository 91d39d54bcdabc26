// `iris doctor`: checks the environment and says what to fix.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/env_info.h"

namespace iris {

enum class CheckStatus { kOk, kWarn, kFail };

struct Check {
  std::string name;
  CheckStatus status = CheckStatus::kOk;
  std::string message;
  std::string fix;  // empty when there is nothing to do
};

struct DoctorOptions {
  std::filesystem::path runs_root = "runs";
  std::filesystem::path atlas_dir = "/usr/share/mricron/templates";
};

std::vector<Check> run_doctor(const EnvReport& env, const DoctorOptions& options);
std::string format_checks(const std::vector<Check>& checks);
bool any_failed(const std::vector<Check>& checks);

}  // namespace iris
