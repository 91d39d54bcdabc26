#include <gtest/gtest.h>

#include <cstdlib>

#include "core/atomic_file.h"
#include "core/device.h"
#include "core/doctor.h"
#include "core/env_info.h"
#include "core/error.h"
#include "test_util.h"

namespace iris {
namespace {

// Lays out fake BLAS libraries the way Debian's alternatives do.
class FakeBlas : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "blas");
    fs::create_directories(dir_ / "openblas-pthread");
    write_file_atomic(dir_ / "blas/libblas.so.3", "not really a library");
    write_file_atomic(dir_ / "openblas-pthread/libblas.so.3", "not really a library");
    fs::create_symlink(dir_ / "blas/libblas.so.3", dir_ / "libblas.so.3");
  }
  void TearDown() override { ::unsetenv("IRIS_BLAS_LIBRARY"); }
  test::TempDir dir_;
};

TEST_F(FakeBlas, ClassifiesByResolvedPath) {
  EXPECT_EQ(classify_blas_library((dir_ / "blas/libblas.so.3").string()), BlasKind::kReference);
  EXPECT_EQ(classify_blas_library((dir_ / "libblas.so.3").string()), BlasKind::kReference)
      << "a symlink is followed to the real library";
  EXPECT_EQ(classify_blas_library((dir_ / "openblas-pthread/libblas.so.3").string()),
            BlasKind::kOpenBlas);
  EXPECT_EQ(classify_blas_library("/opt/intel/lib/libmkl_rt.so.2"), BlasKind::kMkl);
  EXPECT_EQ(classify_blas_library("/usr/lib/libsomething.so"), BlasKind::kUnknown);
}

TEST_F(FakeBlas, DoctorWarnsAboutTheReferenceBlasAndSaysWhatToInstall) {
  ::setenv("IRIS_BLAS_LIBRARY", (dir_ / "libblas.so.3").c_str(), 1);
  const EnvReport env = collect_env();
  EXPECT_EQ(env.blas.kind, BlasKind::kReference);
  const auto checks = run_doctor(env, {dir_.path() / "runs", dir_.path()});
  const auto& blas = checks.front();
  EXPECT_EQ(blas.name, "BLAS");
  EXPECT_EQ(blas.status, CheckStatus::kWarn);
  EXPECT_NE(blas.message.find("15x slower"), std::string::npos);
  EXPECT_NE(blas.fix.find("libopenblas0-pthread"), std::string::npos);

  ::setenv("IRIS_BLAS_LIBRARY", (dir_ / "openblas-pthread/libblas.so.3").c_str(), 1);
  EXPECT_EQ(run_doctor(collect_env(), {dir_.path(), dir_.path()}).front().status, CheckStatus::kOk);
}

TEST_F(FakeBlas, DoctorChecksRunsFolderAndAtlases) {
  const auto checks = run_doctor(collect_env(), {dir_.path() / "runs", dir_.path()});
  bool runs_ok = false, atlas_warned = false;
  for (const auto& c : checks) {
    if (c.name == "runs folder") runs_ok = c.status == CheckStatus::kOk;
    if (c.name == "MRI atlases") atlas_warned = c.status == CheckStatus::kWarn && c.fix.find("mricron-data") != std::string::npos;
  }
  EXPECT_TRUE(runs_ok);
  EXPECT_TRUE(atlas_warned) << "the temp dir has no atlases";
  if (::geteuid() != 0) {
    fs::create_directories(dir_ / "locked");
    fs::permissions(dir_ / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    const auto locked = run_doctor(collect_env(), {dir_.path() / "locked", dir_.path()});
    EXPECT_TRUE(any_failed(locked));
  }
}

TEST(EnvInfo, ReportsLibTorchAndFeatures) {
  const EnvReport env = collect_env();
  ASSERT_FALSE(env.components.empty());
  EXPECT_EQ(env.components.front().name, "LibTorch");
  EXPECT_GT(env.torch_threads, 0);
  const std::string text = format_env(env);
  EXPECT_NE(text.find("LibTorch"), std::string::npos);
  EXPECT_NE(text.find("BLAS:"), std::string::npos);
  EXPECT_NE(text.find("features:"), std::string::npos);
}

TEST(Device, ParsesSpecsAndRejectsBadOnes) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_EQ(resolve_device("auto").is_cuda(), cuda_device_count() > 0);
  EXPECT_THROW(resolve_device("gpu"), InputError);
  EXPECT_THROW(resolve_device("cuda:x"), InputError);
  if (cuda_device_count() == 0) {
    try {
      resolve_device("cuda");
      FAIL();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device is visible"), std::string::npos);
    }
  } else {
    EXPECT_TRUE(resolve_device("cuda:0").is_cuda());
    EXPECT_THROW(resolve_device("cuda:999"), InputError);
  }
  EXPECT_THROW(set_threads(-1), UsageError);
}

}  // namespace
}  // namespace iris
