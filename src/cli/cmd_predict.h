// `iris predict sam2`: segment and track prompted objects in an image, frames, a video or a volume.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;

std::function<int()> setup_predict(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
