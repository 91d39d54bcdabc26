// `iris data`: inspect datasets (convert and synth come with the data issue).
#pragma once

#include <functional>

#include "cli/cli.h"

namespace iris::cli {
std::function<int()> setup_data(CLI::App& app, const GlobalOptions& globals);
}
