// Building a SAM2 model from an official config and loading an official checkpoint into it.
#pragma once

#include <filesystem>
#include <string>

#include "models/sam2/sam2_model.h"

namespace iris::models::sam2 {

struct Sam2LoadOptions {
  // Apply what the official build_sam2_video_predictor adds on top of the config (dynamic
  // multimask, binarised click masks for memory, hole filling). Parity fixtures instantiate the
  // config as written, so they leave this off.
  bool official_postprocessing = false;
  bool strict = true;  // every missing, unexpected or mis-shaped key is an error
};

// Reads the config, builds the model, loads `checkpoint` (.pt as written by torch.save, with the
// state dict at the top level or under "model"; or .safetensors). Throws InputError/ConfigError
// naming the file.
Sam2Model load_sam2(const std::filesystem::path& config, const std::filesystem::path& checkpoint,
                    const Sam2LoadOptions& options = {});

}  // namespace iris::models::sam2
