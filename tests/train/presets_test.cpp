// Every preset in configs/iris/ loads through the config loader, passes the trainer's checks and
// builds its model; the tiny presets also segment one episode.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/config.h"
#if IRIS_HAVE_NIFTI
#include "train/iris_trainer.h"
#endif
#include "test_util.h"

namespace iris {
namespace {

#if IRIS_HAVE_NIFTI

std::vector<fs::path> iris_presets() {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(fs::path(IRIS_SOURCE_DIR) / "configs/iris")) {
    if (entry.path().extension() == ".yaml") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t parameter_count(const models::IrisModel& model) {
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;
}

TEST(IrisPresets, EveryPresetLoadsAndBuildsItsModel) {
  const auto presets = iris_presets();
  std::vector<std::string> names;
  for (const auto& p : presets) names.push_back(p.stem().string());
  for (const char* expected :
       {"atlas_2d_tiny", "atlas_2d_small", "patch_3d_tiny", "patch_3d_small", "patch_3d_paper",
        "msd_3d_tiny", "images_2d_tiny", "subjects_2d_tiny"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
  test::TempDir dir;
  for (const auto& path : presets) {
    SCOPED_TRACE(path.filename().string());
    const auto config = load_config<IrisTrainConfig>({path.string(), {}});
    EXPECT_NO_THROW(check_iris_train_config(config));
    const auto& o = config.model.options;
    if (config.data.source != "datasets") {
      EXPECT_EQ(o.spatial_dims == 3, config.data.source == "synthetic");
    } else {
      EXPECT_FALSE(config.data.datasets.empty());
    }
    // The resolved config, as a run folder stores it, reloads to the same values.
    const fs::path resolved = dir.path() / path.filename();
    write_file_atomic(resolved, dump_config(config));
    EXPECT_EQ(dump_config(load_config<IrisTrainConfig>({resolved.string(), {}})),
              dump_config(config));
    torch::manual_seed(0);
    models::IrisModel model(o);
    EXPECT_GT(parameter_count(model), 0);
    if (path.stem().string().find("tiny") == std::string::npos) continue;
    // One episode at the preset's input size: K classes, batch 1.
    std::vector<int64_t> spatial =
        o.spatial_dims == 3 ? config.data.patch_size
                            : std::vector<int64_t>{config.data.slice_size, config.data.slice_size};
    const int64_t k = config.data.classes_per_episode;
    std::vector<int64_t> image_shape{1, o.in_channels}, mask_shape{1, k};
    image_shape.insert(image_shape.end(), spatial.begin(), spatial.end());
    mask_shape.insert(mask_shape.end(), spatial.begin(), spatial.end());
    torch::NoGradGuard no_grad;
    model->eval();
    const auto out = model->forward(torch::rand(image_shape), torch::rand(image_shape),
                                    (torch::rand(mask_shape) > 0.7).to(torch::kFloat));
    EXPECT_EQ(out.logits.sizes().vec(), mask_shape);
    EXPECT_TRUE(out.logits.isfinite().all().item<bool>());
  }
}

TEST(IrisPresets, PaperPresetHasThePipelineSizes) {
  const auto config = load_config<IrisTrainConfig>(
      {std::string(IRIS_SOURCE_DIR) + "/configs/iris/patch_3d_paper.yaml", {}});
  EXPECT_EQ(config.model.options.spatial_dims, 3);
  EXPECT_EQ(config.model.options.base_channels, 16);
  EXPECT_EQ(config.model.options.stages, 4);
  EXPECT_EQ(config.model.options.query_tokens, 8);
  EXPECT_EQ(config.data.patch_size, (std::vector<int64_t>{16, 128, 128}));
  EXPECT_EQ(config.optim.batch, 1);
  EXPECT_EQ(config.optim.name, "lamb");
  EXPECT_EQ(config.optim.schedule, "exponential");
  // Small sizes train larger models: tiny < small < paper.
  auto params = [](const char* name) {
    torch::manual_seed(0);
    const auto c = load_config<IrisTrainConfig>(
        {std::string(IRIS_SOURCE_DIR) + "/configs/iris/" + name + ".yaml", {}});
    return parameter_count(models::IrisModel(c.model.options));
  };
  EXPECT_LT(params("patch_3d_tiny"), params("patch_3d_small"));
  EXPECT_LT(params("patch_3d_small"), params("patch_3d_paper"));
  EXPECT_LT(params("atlas_2d_tiny"), params("atlas_2d_small"));
}

#endif

}  // namespace
}  // namespace iris
