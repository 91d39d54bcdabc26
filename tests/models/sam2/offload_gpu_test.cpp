// Offloading on a CUDA device (label `gpu`; skipped without one): frames and state kept in host
// memory give the masks of a session that keeps everything on the device.
#include <gtest/gtest.h>

#include "core/device.h"
#include "models/sam2/offload_util.h"

namespace iris::models::sam2 {
namespace {

TEST(Sam2OffloadGpu, HostMemoryStateGivesTheMasksOfDeviceState) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  if (!std::filesystem::exists(offload::micro_fixture())) {
    GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  }
  const c10::Device cuda(c10::kCUDA, 0);
  const auto reference = offload::track_synthetic_clip(cuda, {});
  VideoStateOptions o;
  o.offload_video_to_cpu = true;
  o.offload_state_to_cpu = true;
  const auto masks = offload::track_synthetic_clip(cuda, o);
  ASSERT_EQ(masks.size(), reference.size());
  for (size_t i = 0; i < masks.size(); ++i) {
    // The same kernels on the same values: only copies differ.
    EXPECT_TRUE(torch::equal(masks[i], reference[i])) << "output " << i;
  }
}

}  // namespace
}  // namespace iris::models::sam2
