// `iris data`: inspect datasets, convert the surgical video layouts, write synthetic data.
#pragma once

#include <functional>

#include "cli/cli.h"

namespace iris::cli {
std::function<int()> setup_data(CLI::App& app, const GlobalOptions& globals);
}
