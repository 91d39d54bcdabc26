// The `iris` command line: global options, the command table, dispatch.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace iris::cli {

// Options every command accepts (before or after the command name).
struct GlobalOptions {
  std::string device = "auto";
  int threads = 0;
  std::string precision;  // fp32 | bf16 | fp16; empty: the config's run.precision, else fp32
  std::optional<std::int64_t> seed;
  std::string log_level = "info";
  bool quiet = false;
};

// One `iris <name>` command. `setup` adds its options and returns the function to run after
// parsing, whose result is the exit code. A command with no setup is registered but not
// available yet: it accepts any arguments and says so.
struct Command {
  const char* name;
  const char* summary;
  std::function<std::function<int()>(CLI::App&, const GlobalOptions&)> setup;
};

// --precision of commands without a config (inference, benchmarks): fp32 unless given.
std::string precision_or_default(const GlobalOptions& globals);

// The one place where commands are registered (commands.cpp).
const std::vector<Command>& command_table();

// Parses and runs; returns the exit code of a command that ran. Throws iris::Error subclasses
// (UsageError for command-line mistakes); main() turns them into messages and exit codes.
int run(int argc, char** argv);

}  // namespace iris::cli
