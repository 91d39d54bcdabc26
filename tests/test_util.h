// Helpers shared by the test suites.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

namespace iris::test {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ =
        fs::temp_directory_path() / ("iris-test-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing stdout+stderr and the exit code.
inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The project venv's Python (reference data only); empty path when it is not installed.
// The official-implementation SAM2 fixtures beside the checkout (../shared/fixtures/sam2/NAME).
inline fs::path sam2_fixture(const std::string& name = "micro_seed0") {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2" / name;
}

inline fs::path venv_python() {
  const fs::path python = fs::path(IRIS_SOURCE_DIR) / ".venv/bin/python";
  return fs::exists(python) ? python : fs::path();
}

// The `iris` binary built with this tree, quoted for the shell.
inline std::string iris_binary() {
  return std::string("'") + IRIS_BINARY + "'";
}

}  // namespace iris::test
