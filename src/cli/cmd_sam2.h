// `iris sam2 verify`: parity of the C++ SAM2 with a fixture written by the official code.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;

std::function<int()> setup_sam2(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
