// `iris eval sam2`: the documented evaluation protocol on a video dataset.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;

std::function<int()> setup_eval(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
