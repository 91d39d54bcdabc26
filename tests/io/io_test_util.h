// Helpers for the io tests: the project venv's Python (reference files only) and shared fixtures.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "core/error.h"
#include "test_util.h"

namespace iris::test {

inline bool have_python() {
  return !venv_python().empty();
}
inline fs::path shared_dir() {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared";
}
inline fs::path io_test_script(const std::string& name) {
  return fs::path(IRIS_SOURCE_DIR) / "tests" / "io" / name;
}

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline CommandResult run_python(const std::string& script, const std::string& args) {
  return run_command("'" + venv_python().string() + "' '" + io_test_script(script).string() + "' " +
                     args);
}

// The files make_fixtures.py writes, generated once per version of the script and shared by all
// test processes (ctest runs each test in its own process). Empty path and `error` set on failure.
struct PythonFixtures {
  fs::path dir;
  std::string error;
};

inline PythonFixtures python_fixtures() {
  const std::string script = slurp(io_test_script("make_fixtures.py"));
  const fs::path dir = fs::path(IRIS_IO_FIXTURE_DIR) /
                       std::to_string(std::hash<std::string>{}(script)&0xffffffffffULL);
  if (fs::exists(dir / "manifest.json")) return {dir, ""};
  fs::create_directories(dir.parent_path());
  const fs::path temp = dir.string() + ".tmp" + std::to_string(::getpid());
  fs::remove_all(temp);
  const auto r = run_python("make_fixtures.py", "'" + temp.string() + "'");
  if (r.exit_code != 0) return {{}, "make_fixtures.py failed:\n" + r.output};
  std::error_code ec;
  fs::rename(temp, dir, ec);  // another process may have won the race: use its copy
  if (ec) fs::remove_all(temp);
  return {dir, ""};
}

// Runs `fn`, expecting an InputError whose message contains `needle`; returns the message.
template <typename F>
std::string expect_input_error(F&& fn, const std::string& needle) {
  try {
    fn();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "not one line: " << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected InputError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected InputError containing: " << needle;
  return "";
}

}  // namespace iris::test

#define IRIS_REQUIRE_PYTHON()                             \
  if (!::iris::test::have_python())                       \
  GTEST_SKIP() << "needs .venv/bin/python" \
               << " (the project venv with torch and safetensors) to write reference files"

#define IRIS_PYTHON_FIXTURES(var)                                    \
  IRIS_REQUIRE_PYTHON();                                             \
  const auto var##_fixtures = ::iris::test::python_fixtures();       \
  ASSERT_TRUE(var##_fixtures.error.empty()) << var##_fixtures.error; \
  const fs::path var = var##_fixtures.dir
