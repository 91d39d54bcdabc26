#include "models/sam2/sam2_loader.h"

#include "io/checkpoint.h"
#include "io/model_state.h"

namespace iris::models::sam2 {

Sam2Model load_sam2(const std::filesystem::path& config, const std::filesystem::path& checkpoint,
                    const Sam2LoadOptions& options) {
  auto sam2_options = load_sam2_config(config);
  if (options.official_postprocessing) apply_official_postprocessing(sam2_options, /*video=*/true);
  Sam2Model model(sam2_options);
  const auto file = io::read_checkpoint(checkpoint);
  const auto sd = io::select_state_dict(file.root, "", checkpoint.string());
  io::load_state_dict(*model, sd, options.strict);
  model->eval();
  return model;
}

}  // namespace iris::models::sam2
