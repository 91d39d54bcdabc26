// The CUDA fast path (label gpu; skipped without a CUDA device): IRIS training with bf16 autocast
// and channels-last layout, peak GPU memory per metrics row and per run, pinned asynchronous
// copies, the fp16 loss scaler on device gradients.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

#include "core/build_info.h"
#include "core/device.h"
#include "core/precision.h"
#include "core/run_dir.h"
#include "test_util.h"
#if IRIS_HAVE_NIFTI
#include "data/atlas.h"
#include "train/iris_trainer.h"
#endif

namespace iris {
namespace {

bool have_cuda() {
  return torch::cuda::is_available() && torch::cuda::device_count() > 0;
}

TEST(Gpu, PinnedAsynchronousCopyAndChannelsLastInputs) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  const at::Tensor host = at::randn({2, 3, 8, 8});
  const at::Tensor on_device = to_device(host, cuda);
  EXPECT_TRUE(on_device.is_cuda());
  EXPECT_TRUE(at::equal(on_device.cpu(), host));
  EXPECT_TRUE(to_channels_last(on_device).is_contiguous(at::MemoryFormat::ChannelsLast));
}

TEST(Gpu, LossScalerOnDeviceGradients) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  LossScaler scaler;
  const at::Tensor w = at::randn({16}, at::TensorOptions().device(cuda)).requires_grad_();
  const at::Tensor x = at::randn({16}, at::TensorOptions().device(cuda));
  at::Tensor y;
  {
    AutocastScope autocast(cuda, Precision::kFloat16);
    y = at::matmul(w.unsqueeze(0), x.unsqueeze(1));
    EXPECT_EQ(y.scalar_type(), at::kHalf);
  }
  scaler.scale(y.to(at::kFloat).sum()).backward();
  EXPECT_TRUE(scaler.unscale_and_check({w}));
  EXPECT_TRUE(at::allclose(w.grad(), x.to(at::kHalf).to(at::kFloat), 1e-2, 1e-2));
  w.mutable_grad().fill_(std::numeric_limits<float>::infinity());
  EXPECT_FALSE(scaler.unscale_and_check({w}));
}

#if IRIS_HAVE_NIFTI
TEST(Gpu, IrisTrainsWithBf16AndChannelsLastAndLogsPeakGpuMemory) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  if (!is_mricron_atlas_dir(kMricronTemplates))
    GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  auto config = load_config<IrisTrainConfig>(
      {"",
       {"run.root=" + dir.path().string(), "run.name=cuda", "run.device=cuda", "run.precision=bf16",
        "run.channels_last=true", "model.base_channels=4", "model.stages=3", "model.query_tokens=2",
        "model.heads=2", "data.slice_size=48", "optim.iterations=4", "optim.warmup=2",
        "optim.batch=2", "validation.every=2", "validation.episodes=2"}});
  const TrainResult r = train_iris(config);
  ASSERT_TRUE(r.finished);
  const RunDir run = RunDir::existing(dir / "cuda");
  int64_t step_rows = 0;
  for (const auto& row : run.read_metrics()) {
    if (!row.contains("train/loss")) continue;
    ++step_rows;
    EXPECT_TRUE(std::isfinite(row["train/loss"].get<double>())) << row.dump();
    ASSERT_TRUE(row.contains("memory/peak_gpu_mb")) << row.dump();
    EXPECT_GT(row["memory/peak_gpu_mb"].get<double>(), 0.0);
  }
  EXPECT_EQ(step_rows, 4);
  const auto summary = run.read_summary();
  EXPECT_EQ(summary["precision"], "bf16");
  ASSERT_TRUE(summary.contains("memory/peak_gpu_mb"));
  EXPECT_GT(summary["memory/peak_gpu_mb"].get<double>(), 0.0);
  // The weights were saved as float32 values whatever the layout and precision of the run.
  const auto model =
      load_iris_checkpoint((run.checkpoints_dir() / "last.pt").string(), config.model.options);
  for (const auto& p : model->parameters()) {
    EXPECT_EQ(p.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::isfinite(p).all().item<bool>());
  }
}
#endif

}  // namespace
}  // namespace iris
