// `iris bench sam2|iris|data`: timings of the models, measured in this process, as a table and
// JSON.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;

std::function<int()> setup_bench(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
