// `iris demo --out DIR`: the main job end to end.
#pragma once

#include <functional>

#include "cli/cli.h"

namespace iris::cli {
std::function<int()> setup_demo(CLI::App& app, const GlobalOptions& globals);
}
