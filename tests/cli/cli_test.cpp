// Runs the real `iris` binary: exit codes and messages are part of the interface.
#include <gtest/gtest.h>

#include "cli/cli.h"
#include "test_util.h"

namespace iris {
namespace {

using test::iris_binary;
using test::run_command;

TEST(Cli, HelpListsEveryRegisteredCommand) {
  const auto r = run_command(iris_binary() + " --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const auto& command : cli::command_table()) {
    EXPECT_NE(r.output.find(command.name), std::string::npos) << command.name;
  }
  for (const char* option : {"--device", "--threads", "--seed", "--log-level", "--quiet"}) {
    EXPECT_NE(r.output.find(option), std::string::npos) << option;
  }
}

TEST(Cli, VersionReportsLibTorchBlasAndFeatures) {
  const auto r = run_command(iris_binary() + " version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("LibTorch"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("BLAS:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("OpenCV"), std::string::npos) << r.output;
}

TEST(Cli, DoctorRunsItsChecks) {
  test::TempDir dir;
  const auto r = run_command(iris_binary() + " doctor --runs '" + (dir / "runs").string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* check : {"BLAS", "threads", "CUDA", "runs folder", "MRI atlases"}) {
    EXPECT_NE(r.output.find(check), std::string::npos) << check << "\n" << r.output;
  }
}

TEST(Cli, DoctorFlagsAFakeReferenceBlas) {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "blas");
  const auto r = run_command("IRIS_BLAS_LIBRARY='" + (dir / "blas/libblas.so.3").string() + "' " +
                             iris_binary() + " doctor --strict");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("[warn] BLAS: LibTorch uses reference BLAS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("apt-get install libopenblas0-pthread"), std::string::npos) << r.output;
}

TEST(Cli, BadUsageExitsWithTheUsageCode) {
  auto r = run_command(iris_binary() + " no-such-command");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("iris --help"), std::string::npos) << r.output;
  r = run_command(iris_binary() + " version --no-such-option");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_command(iris_binary() + " --threads abc version");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_command(iris_binary() + " --threads -2 version");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_command(iris_binary() + " --log-level loud version");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("expected trace, debug, info, warn, error or off"), std::string::npos);
}

TEST(Cli, GlobalOptionsMayFollowTheCommand) {
  const auto r = run_command(iris_binary() + " version --threads 1 --seed 3 --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 threads (LibTorch)"), std::string::npos) << r.output;
}

TEST(Cli, UnavailableDeviceIsABadInputNamingIt) {
  const auto r = run_command(iris_binary() + " --device tpu version");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("--device tpu: expected cpu, cuda, cuda:N or auto"), std::string::npos)
      << r.output;
}

TEST(Cli, CommandsNotYetAvailableSaySoAndExitNonZero) {
  for (const auto& command : cli::command_table()) {
    if (command.setup) continue;
    const auto r = run_command(iris_binary() + " " + command.name + " some-arg --some-flag");
    EXPECT_EQ(r.exit_code, 5) << command.name << ": " << r.output;
    EXPECT_NE(r.output.find("is not available yet"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace iris
