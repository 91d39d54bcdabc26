// `iris report`: training and insights reports.
#pragma once

#include <functional>

#include "cli/cli.h"

namespace iris::cli {

// Adds `report insights` (and future report kinds) to `app`; returns the runner.
std::function<int()> setup_report(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
