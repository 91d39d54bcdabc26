// The `iris` executable: the only place where errors become messages and exit codes.
#include <fmt/format.h>

#include <cstdio>

#include "cli/cli.h"
#include "core/error.h"

int main(int argc, char** argv) {
  try {
    return iris::cli::run(argc, argv);
  } catch (const iris::Error& e) {
    fmt::print(stderr, "iris: error: {}\n", e.what());
    return static_cast<int>(e.exit_code());
  } catch (const c10::Error& e) {
    fmt::print(stderr, "iris: error: {}\n", e.what_without_backtrace());
    return static_cast<int>(iris::ExitCode::kRuntime);
  } catch (const std::exception& e) {
    fmt::print(stderr, "iris: internal error: {}\n", e.what());
    return static_cast<int>(iris::ExitCode::kFailure);
  }
}
