#include "track/tensorboard.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <string>

#include "core/atomic_file.h"
#include "test_util.h"

namespace iris::track {
namespace {

namespace fs = std::filesystem;

// Runs read_tensorboard.py on an event folder.
test::CommandResult read_events(const fs::path& python, const fs::path& folder) {
  const fs::path script = fs::path(IRIS_SOURCE_DIR) / "tests" / "track" / "read_tensorboard.py";
  return test::run_command(
      fmt::format("'{}' '{}' '{}'", python.string(), script.string(), folder.string()));
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending += static_cast<char>(i);
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  // Masking rotates right by 15 and adds 0xa282ead8.
  const std::uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789"), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TfRecord, FramesLengthDataAndChecksums) {
  const std::string data = "hello";
  const std::string r = tfrecord(data);
  ASSERT_EQ(r.size(), 8u + 4u + data.size() + 4u);
  EXPECT_EQ(static_cast<unsigned char>(r[0]), 5u);  // u64 little endian
  for (int i = 1; i < 8; ++i) EXPECT_EQ(r[i], '\0');
  EXPECT_EQ(r.substr(12, 5), data);
  auto u32_at = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(r[at + i]);
    return v;
  };
  EXPECT_EQ(u32_at(8), masked_crc32c(r.substr(0, 8)));
  EXPECT_EQ(u32_at(17), masked_crc32c(data));
}

TEST(TensorBoard, EventProtoBytes) {
  // wall_time 1.0 (fixed64), step 3 (varint), summary{value{tag "a", simple_value 0.5f}}.
  const std::string e = scalars_event(1.0, 3, {{"a", 0.5f}});
  const std::string expected(
      "\x09\x00\x00\x00\x00\x00\x00\xf0\x3f"
      "\x10\x03"
      "\x2a\x0a\x0a\x08\x0a\x01"
      "a"
      "\x15\x00\x00\x00\x3f",
      9 + 2 + 12);
  EXPECT_EQ(e, expected);
  const std::string v = file_version_event(0.0);
  EXPECT_NE(v.find("\x1a\x0d"
                   "brain.Event:2"),
            std::string::npos);
}

TEST(TensorBoard, TheTensorboardPackageReadsOurScalars) {
  const fs::path python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << "needs .venv/bin/python with the tensorboard package";
  test::TempDir dir;
  const fs::path tb = dir / "run" / "tb";
  {
    TensorBoardWriter writer(tb);
    EXPECT_EQ(writer.path().parent_path(), tb);
    EXPECT_EQ(writer.path().filename().string().rfind("events.out.tfevents.", 0), 0u);
    for (int step = 1; step <= 5; ++step) {
      writer.add_scalars({{"train/loss", 1.0 / step}, {"train/dice", 0.1 * step}, {"lr", 2e-3}},
                         step, 1700000000.0 + step);
    }
    writer.add_scalar("val/dice", 0.625, 5, 1700000010.0);
    writer.add_scalar("neg", -3.25, 1'000'000'000'000, 1700000011.0);  // large step: 6-byte varint
  }
  const auto r = read_events(python, tb);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["files"].size(), 1u);
  EXPECT_EQ(j["records"], 1 + 5 + 1 + 1);
  EXPECT_EQ(j["file_version"], "brain.Event:2");
  const auto& s = j["scalars"];
  ASSERT_EQ(s.size(), 5u) << s.dump();
  ASSERT_EQ(s["train/loss"].size(), 5u);
  for (int step = 1; step <= 5; ++step) {
    const auto& e = s["train/loss"][step - 1];
    EXPECT_EQ(e[0], step);
    EXPECT_EQ(e[1].get<double>(), static_cast<double>(static_cast<float>(1.0 / step)));
    EXPECT_DOUBLE_EQ(e[2].get<double>(), 1700000000.0 + step);
    EXPECT_FLOAT_EQ(s["train/dice"][step - 1][1].get<float>(), 0.1f * step);
  }
  EXPECT_FLOAT_EQ(s["lr"][4][1].get<float>(), 2e-3f);
  EXPECT_EQ(s["val/dice"][0][0], 5);
  EXPECT_EQ(s["val/dice"][0][1].get<double>(), 0.625);
  EXPECT_EQ(s["neg"][0][0].get<std::int64_t>(), 1'000'000'000'000);
  EXPECT_EQ(s["neg"][0][1].get<double>(), -3.25);
}

TEST(TensorBoard, ACorruptedRecordFailsTheCrcCheck) {
  const fs::path python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << "needs .venv/bin/python with the tensorboard package";
  test::TempDir dir;
  fs::path file;
  {
    TensorBoardWriter writer(dir / "tb");
    writer.add_scalar("x", 1.0, 1);
    file = writer.path();
  }
  std::string bytes = read_file(file);
  bytes[bytes.size() - 6] ^= 0x01;  // inside the last event's float
  write_file_atomic(file, bytes);
  const auto r = read_events(python, dir / "tb");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("crc32"), std::string::npos) << r.output;
}

// `iris train` logs train loss, Dice and learning rate per step and validation loss and Dice per
// validation into the run folder's tb/.
TEST(TensorBoard, TrainingWritesScalarsIntoTheRunFolder) {
  const fs::path python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << "needs .venv/bin/python with the tensorboard package";
  if (!fs::exists("/usr/share/mricron/templates/ch2bet.nii.gz")) {
    GTEST_SKIP() << "mricron-data atlases not installed";
  }
  test::TempDir dir;
  const auto train = test::run_command(
      test::iris_binary() + " train '" +
      (fs::path(IRIS_SOURCE_DIR) / "configs/iris/atlas_2d_tiny.yaml").string() +
      "' --set optim.iterations=4 --set validation.every=2 --set validation.episodes=2" +
      " --set run.name=tiny --set run.root='" + dir.path().string() + "' --threads 1 -q");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  const auto r = read_events(python, dir / "tiny" / "tb");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const auto& s = j["scalars"];
  for (const char* tag : {"train/loss", "train/dice", "lr"}) {
    ASSERT_EQ(s[tag].size(), 4u) << tag;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(s[tag][i][0], i + 1) << tag;
  }
  for (const char* tag : {"val/loss", "val/dice"}) {
    ASSERT_EQ(s[tag].size(), 2u) << tag;
    EXPECT_EQ(s[tag][0][0], 2);
    EXPECT_EQ(s[tag][1][0], 4);
  }
  // The same numbers as metrics.jsonl, at float precision.
  const auto lines = read_complete_lines(dir / "tiny" / "metrics.jsonl");
  const auto first = nlohmann::json::parse(lines.front());
  EXPECT_EQ(s["train/loss"][0][1].get<double>(),
            static_cast<double>(static_cast<float>(first["train/loss"].get<double>())));
  EXPECT_EQ(s["lr"][0][1].get<double>(),
            static_cast<double>(static_cast<float>(first["lr"].get<double>())));
}

}  // namespace
}  // namespace iris::track
