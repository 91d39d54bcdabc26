// `iris train CONFIG`: train a model from a YAML config (IRIS on 2D slices so far).
#pragma once

#include <functional>

#include "cli/cli.h"

namespace iris::cli {
std::function<int()> setup_train(CLI::App& app, const GlobalOptions& globals);
}
