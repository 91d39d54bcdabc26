// `iris sweep CONFIG`: datasets x prompt types x recipes x seeds of SAM2 fine-tuning runs with
// their untrained baselines, on local workers or as a Slurm job array.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;

std::function<int()> setup_sweep(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
