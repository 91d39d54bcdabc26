// `iris predict sam2`: segment and track prompted objects in an image, frames, a video or a volume.
// `iris predict iris`: segment the classes of labelled references in a query image or volume.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace iris::cli {

struct GlobalOptions;
}  // namespace iris::cli

namespace iris {
struct IrisPredictOptions;
struct IrisTrainConfig;
}  // namespace iris

namespace iris::cli {

// The preparation a model trained by `iris train` expects, from its run's config: data.datasets
// runs see images through data/preprocess.h with the run's settings and the modality given
// (or, when `modality` is "", the one its first dataset recorded); atlas runs see [0, 1]
// intensities.
void use_training_preparation(IrisPredictOptions& options, const IrisTrainConfig& config,
                              const std::string& modality);

std::function<int()> setup_predict(CLI::App& app, const GlobalOptions& globals);

}  // namespace iris::cli
