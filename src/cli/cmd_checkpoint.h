// `iris checkpoint inspect|convert`: look into and convert .pt and .safetensors checkpoints.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;

std::function<int()> setup_checkpoint(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
