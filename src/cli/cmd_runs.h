// `iris runs list|show|compare|export|import`: the run store from the command line.
#pragma once

#include <functional>

#include "cli/cli.h"

namespace iris::cli {

// Adds the runs subcommands to `app`; returns the runner.
std::function<int()> setup_runs(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
