// Mixed-precision training on CPU: IRIS with bf16 autocast stays close to float32, channels-last
// changes nothing but the layout, fp16 with loss scaling resumes exactly; a SAM2 fine-tuning step
// runs under bf16.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

#include "core/build_info.h"
#include "core/run_dir.h"
#include "core/torch_compat.h"
#include "data/synthetic_video.h"
#include "io/checkpoint.h"
#include "test_util.h"
#include "train/recipes.h"
#include "train/sam2_trainer.h"
#if IRIS_HAVE_NIFTI
#include "data/atlas.h"
#include "train/iris_trainer.h"
#endif

namespace iris {
namespace {

namespace fs = std::filesystem;

#if IRIS_HAVE_NIFTI

IrisTrainConfig tiny_config(const fs::path& root, const std::string& name, int64_t iterations) {
  return load_config<IrisTrainConfig>(
      {"",
       {"run.root=" + root.string(), "run.name=" + name, "run.threads=1", "model.base_channels=4",
        "model.stages=3", "model.query_tokens=2", "model.heads=2", "data.slice_size=48",
        "optim.iterations=" + std::to_string(iterations), "optim.warmup=2", "optim.batch=2",
        "validation.every=0", "validation.episodes=2", "checkpoint_every=0"}});
}

std::vector<double> train_losses(const RunDir& run) {
  std::vector<double> losses;
  for (const auto& row : run.read_metrics()) {
    if (row.contains("train/loss")) losses.push_back(row["train/loss"].get<double>());
  }
  return losses;
}

TEST(MixedPrecisionTraining, IrisBf16LossesAreFiniteAndCloseToFloat32) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  train_iris(tiny_config(dir.path(), "fp32", 3));
  auto config = tiny_config(dir.path(), "bf16", 3);
  config.run.precision = "bf16";
  const TrainResult r = train_iris(config);
  ASSERT_TRUE(r.finished);
  const auto fp32 = train_losses(RunDir::existing(dir / "fp32"));
  const auto bf16 = train_losses(RunDir::existing(dir / "bf16"));
  ASSERT_EQ(fp32.size(), 3u);
  ASSERT_EQ(bf16.size(), 3u);
  for (const double loss : bf16) EXPECT_TRUE(std::isfinite(loss)) << loss;
  // Same seed, episodes and initial weights: only the rounding of the forward pass differs.
  EXPECT_NEAR(bf16[0], fp32[0], 0.05 * fp32[0]);
  EXPECT_NE(bf16[0], fp32[0]) << "autocast did not change the arithmetic";
  const auto summary = RunDir::existing(dir / "bf16").read_summary();
  EXPECT_EQ(summary["precision"], "bf16");
  EXPECT_FALSE(summary.contains("memory/peak_gpu_mb")) << "CPU runs keep RSS only";
  for (const auto& row : RunDir::existing(dir / "bf16").read_metrics()) {
    EXPECT_FALSE(row.contains("skipped_step")) << "bf16 needs no loss scaling";
  }
}

TEST(MixedPrecisionTraining, IrisChannelsLastOnlyChangesTheLayout) {
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  train_iris(tiny_config(dir.path(), "contiguous", 2));
  auto config = tiny_config(dir.path(), "channels_last", 2);
  config.run.channels_last = true;
  train_iris(config);
  const auto a = train_losses(RunDir::existing(dir / "contiguous"));
  const auto b = train_losses(RunDir::existing(dir / "channels_last"));
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4 * a[i]) << i;
}

TEST(MixedPrecisionTraining, IrisFp16WithLossScalingResumesExactly) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  // A start scale of 2^27 overflows the fp16 gradients of the first steps; the scale halves
  // until they fit, and the run goes on from there.
  auto fp16_config = [&](const std::string& name) {
    auto c = tiny_config(dir.path(), name, 6);
    c.run.precision = "fp16";
    c.run.loss_scale = 134217728.0;
    return c;
  };
  const TrainResult straight = train_iris(fp16_config("straight"));
  ASSERT_TRUE(straight.finished);
  const auto split_config = fp16_config("split");
  EXPECT_EQ(train_iris(split_config, {"", 3}).steps, 3);

  // The scaler's state is in the checkpoint: the scale step 4 of the straight run used.
  const RunDir split = RunDir::existing(dir / "split");
  {
    torch::serialize::InputArchive archive;
    archive.load_from((split.checkpoints_dir() / "last.pt").string());
    at::Tensor scale;
    archive.read("scaler/scale", scale);
    for (const auto& row : RunDir::existing(dir / "straight").read_metrics()) {
      if (row.contains("train/loss") && row["step"] == 4) {
        EXPECT_EQ(scale.item<double>(), row["loss_scale"].get<double>());
      }
    }
  }
  const TrainResult resumed = train_iris(split_config, {split.path().string(), 0});
  EXPECT_EQ(resumed.resumed_from, 3);
  EXPECT_TRUE(resumed.finished);

  const auto a = RunDir::existing(dir / "straight").read_metrics();
  const auto b = split.read_metrics();
  ASSERT_EQ(a.size(), b.size());
  int64_t step_rows = 0, skipped = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].contains("train/loss")) continue;
    ++step_rows;
    if (a[i]["skipped_step"].get<bool>()) ++skipped;
    ASSERT_TRUE(a[i].contains("skipped_step")) << a[i].dump();
    ASSERT_TRUE(b[i].contains("loss_scale")) << b[i].dump();
    EXPECT_TRUE(std::isfinite(a[i]["train/loss"].get<double>()));
    EXPECT_EQ(a[i]["skipped_step"], b[i]["skipped_step"]) << "row " << i;
    EXPECT_EQ(a[i]["loss_scale"], b[i]["loss_scale"]) << "row " << i;
    const double x = a[i]["train/loss"].get<double>(), y = b[i]["train/loss"].get<double>();
    EXPECT_LE(std::abs(x - y), 1e-6 * std::max(1.0, std::abs(x))) << "row " << i;
  }
  EXPECT_EQ(step_rows, 6);
  EXPECT_GT(skipped, 0) << "the start scale overflows";
  EXPECT_LT(skipped, 6) << "the scale backs off until the gradients fit";
  // Rows log the scale the step used: halved after each skipped step, never grown in 6 steps.
  double scale = 134217728.0;
  for (const auto& row : a) {
    if (!row.contains("train/loss")) continue;
    EXPECT_EQ(row["loss_scale"].get<double>(), scale) << row.dump();
    if (row["skipped_step"].get<bool>()) scale /= 2;
  }
  EXPECT_DOUBLE_EQ(straight.final_train_loss, resumed.final_train_loss);
  EXPECT_EQ(RunDir::existing(dir / "straight").read_summary()["precision"], "fp16");
}

TEST(MixedPrecisionTraining, Iris3dPatchesTrainUnderBf16InChannelsLast3dLayout) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  test::TempDir dir;
  auto patch_config = [&](const std::string& name) {
    return load_config<IrisTrainConfig>(
        {std::string(IRIS_SOURCE_DIR) + "/configs/iris/patch_3d_tiny.yaml",
         {"run.root=" + dir.path().string(), "run.name=" + name, "run.threads=1",
          "data.volume_size=24", "data.volumes=3", "data.patch_size=[8,16,16]",
          "optim.iterations=2", "optim.batch=2", "validation.every=0", "validation.episodes=2"}});
  };
  train_iris(patch_config("fp32"));
  auto config = patch_config("bf16");
  config.run.precision = "bf16";
  config.run.channels_last = true;
  const TrainResult r = train_iris(config);
  ASSERT_TRUE(r.finished);
  const auto fp32 = train_losses(RunDir::existing(dir / "fp32"));
  const auto bf16 = train_losses(RunDir::existing(dir / "bf16"));
  ASSERT_EQ(bf16.size(), 2u);
  for (const double loss : bf16) EXPECT_TRUE(std::isfinite(loss)) << loss;
  EXPECT_NEAR(bf16[0], fp32[0], 0.05 * fp32[0]);
}

TEST(MixedPrecisionTraining, IrisSkippedFp16StepsLeaveTheWeightsAsTheyWere) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  auto config = tiny_config(dir.path(), "overflow", 2);
  config.run.precision = "fp16";
  config.run.loss_scale = 1e30;  // every step overflows
  train_iris(config);
  const RunDir run = RunDir::existing(dir / "overflow");
  for (const auto& row : run.read_metrics()) {
    if (row.contains("train/loss")) {
      EXPECT_TRUE(row["skipped_step"].get<bool>()) << row.dump();
    }
  }
  EXPECT_EQ(run.read_summary()["memory_bank/classes"], 0) << "skipped steps update no bank entry";
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  const models::IrisModel initial(config.model.options);
  const auto trained =
      load_iris_checkpoint((run.checkpoints_dir() / "last.pt").string(), config.model.options);
  const auto a = initial->named_parameters(), b = trained->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();
}

#endif

TEST(MixedPrecisionTraining, Sam2FineTuningStepRunsUnderBf16) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  const fs::path micro = test::sam2_fixture();
  if (!fs::exists(micro)) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  SyntheticVideoOptions s;
  s.videos = 1;
  s.frames = 2;
  s.width = 256;
  s.height = 256;
  s.seed = 3;
  write_synthetic_videos(s, dir / "train");
  s.seed = 4;
  write_synthetic_videos(s, dir / "val");

  Sam2TrainConfig c;
  c.run.root = (dir / "runs").string();
  c.run.name = "bf16";
  c.run.threads = 1;
  c.run.precision = "bf16";
  c.recipe = "md";
  c.model.config = (micro / "config.yaml").string();
  c.model.checkpoint = (micro / "checkpoint.pt").string();
  c.model.prompt_type = "box";
  c.data.train = (dir / "train").string();
  c.data.val = (dir / "val").string();
  c.data.clip_length = 2;
  c.data.clip_stride = 2;
  c.train.max_epochs = 1;
  c.train.lr = 1e-3;
  c.train.feature_cache = "off";
  const auto r = train_sam2(c);
  EXPECT_EQ(r.steps, 1);

  const RunDir run = RunDir::existing(r.run_dir);
  int64_t train_rows = 0;
  for (const auto& row : run.read_metrics()) {
    if (!row.contains("train/loss")) continue;
    ++train_rows;
    EXPECT_TRUE(std::isfinite(row["train/loss"].get<double>())) << row.dump();
  }
  EXPECT_EQ(train_rows, 1);
  EXPECT_EQ(run.read_summary()["precision"], "bf16");
  // The mask decoder trained; weights stay float32.
  const auto start =
      io::select_state_dict(io::read_checkpoint(micro / "checkpoint.pt").root, "", "ckpt");
  const auto last = io::read_safetensors(fs::path(r.run_dir) / "checkpoints" / "last.safetensors");
  int64_t changed_md = 0;
  for (const auto& [name, t] : start) {
    const auto* after = last.tensors.find(name);
    ASSERT_NE(after, nullptr) << name;
    EXPECT_EQ(after->scalar_type(), t.scalar_type()) << name;
    if (sam2_parameter_groups().group_of(name) == "md" && !torch::equal(t, *after)) ++changed_md;
  }
  EXPECT_GT(changed_md, 0);
}

}  // namespace
}  // namespace iris
