// `--precision` on the command line: benchmarks report it, inference and evaluation run under
// bf16 autocast end to end, unknown values are usage errors.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/torch_compat.h"
#include "data/synthetic_video.h"
#include "io/image_io.h"
#include "models/iris/iris_model.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using test::iris_binary;
using test::run_command;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(PrecisionCli, AnUnknownPrecisionIsAUsageError) {
  const auto r = run_command(iris_binary() + " --precision fp8 version");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("fp8"), std::string::npos) << r.output;
}

TEST(PrecisionCli, BenchIrisRowsCarryThePrecision) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  test::TempDir dir;
  const auto json = dir / "iris.json";
  const auto r = run_command("OMP_NUM_THREADS=1 " + iris_binary() +
                             " --threads 1 --precision bf16 bench iris --preset tiny "
                             "--spatial-dims 2 --size 32 --repeats 1 --json '" +
                             json.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto rows = read_json(json);
  ASSERT_TRUE(rows.is_array());
  ASSERT_FALSE(rows.empty());
  for (const auto& row : rows) {
    EXPECT_EQ(row["precision"], "bf16") << row.dump();
    EXPECT_GT(row["median_ms"].get<double>(), 0.0);
  }
}

TEST(PrecisionCli, PredictAndEvalIrisRunUnderBf16) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV (PNG slices)";
  test::TempDir dir;
  fs::create_directories(dir / "pool" / "masks");
  const auto y = torch::arange(40).view({40, 1}).to(torch::kFloat);
  const auto x = torch::arange(36).view({1, 36}).to(torch::kFloat);
  for (int64_t c = 0; c < 3; ++c) {
    const auto disk = ((y - 15 - c).pow(2) + (x - 18 + c).pow(2)) < 49;
    const auto image = (60 + 120 * disk.to(torch::kFloat)).to(torch::kByte);
    write_image(dir / "pool" / fmt::format("case{}.png", c), image);
    write_image(dir / "pool" / "masks" / fmt::format("case{}.png", c), disk.to(torch::kByte));
  }
  {
    torch::manual_seed(0);
    models::IrisModel model(models::IrisOptions{2, 1, 4, 2, 3, 2, 1, false});
    torch::serialize::OutputArchive archive;
    model->save(archive);
    archive.save_to((dir / "model.pt").string());
  }
  write_file_atomic(dir / "config.yaml",
                    "model:\n  spatial_dims: 2\n  base_channels: 4\n  stages: 2\n"
                    "  query_tokens: 3\n  heads: 2\n  decoder_layers: 1\n  prior_features: 0\n"
                    "data:\n  label_map: aal\n  slice_size: 32\n");
  const std::string model_args =
      fmt::format("--checkpoint '{}' --config '{}'", (dir / "model.pt").string(),
                  (dir / "config.yaml").string());
  const auto r = run_command(fmt::format(
      "{} --threads 1 --precision bf16 predict iris {} --reference '{}' --reference-mask '{}' "
      "--query '{}' --out '{}'",
      iris_binary(), model_args, (dir / "pool" / "case0.png").string(),
      (dir / "pool" / "masks" / "case0.png").string(), (dir / "pool" / "case1.png").string(),
      (dir / "out").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto mask = read_image_raw(dir / "out" / "mask.png");
  EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{40, 36}));
  EXPECT_EQ(((mask != 0) & (mask != 1)).sum().item<int64_t>(), 0);

  const auto e = run_command(
      fmt::format("{} --threads 1 --precision bf16 eval iris '{}' {} --references 2 --strategies "
                  "one-shot,tuning --tuning-steps 2 --out '{}'",
                  iris_binary(), (dir / "pool").string(), model_args, (dir / "eval").string()));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto json = read_json(dir / "eval" / "eval.json");
  for (const char* s : {"one-shot", "tuning"}) {
    ASSERT_TRUE(json["strategies"].contains(s)) << s;
    for (const auto& [name, c] : json["strategies"][s]["classes"].items()) {
      EXPECT_GE(c["dice"].get<double>(), 0.0) << name;
      EXPECT_LE(c["dice"].get<double>(), 1.0) << name;
    }
  }
}

TEST(PrecisionCli, PredictSam2RunsUnderBf16) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  const fs::path micro = test::sam2_fixture();
  if (!fs::exists(micro)) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  SyntheticVideoOptions options;
  options.frames = 3;
  options.width = 256;
  options.height = 256;
  options.seed = 4;
  fs::create_directories(dir / "frames");
  for (int64_t t = 0; t < options.frames; ++t) {
    write_image(dir / "frames" / fmt::format("frame{}.png", t),
                render_synthetic_frame(options, 0, t).image);
  }
  auto predict = [&](const std::string& precision) {
    return run_command(fmt::format(
        "{} --threads 1 --precision {} predict sam2 '{}' --config '{}' --checkpoint '{}' "
        "--box 60,60,180,160 --frame 0 --no-overlay --out '{}'",
        iris_binary(), precision, (dir / "frames").string(), (micro / "config.yaml").string(),
        (micro / "checkpoint.pt").string(), (dir / precision).string()));
  };
  const auto bf16 = predict("bf16");
  ASSERT_EQ(bf16.exit_code, 0) << bf16.output;
  const auto fp32 = predict("fp32");
  ASSERT_EQ(fp32.exit_code, 0) << fp32.output;
  const auto a = read_json(dir / "bf16" / "prediction.json");
  const auto b = read_json(dir / "fp32" / "prediction.json");
  EXPECT_EQ(a["frames"], 3);
  for (int64_t t = 0; t < options.frames; ++t) {
    const auto name = fmt::format("frame{}.png", t);
    ASSERT_TRUE(fs::exists(dir / "bf16" / "masks" / name)) << name;
    const auto labels = read_image_raw(dir / "bf16" / "masks" / name);
    EXPECT_EQ(((labels != 0) & (labels != 1)).sum().item<int64_t>(), 0);
  }
  // The prompted frame's mask areas agree up to bf16 rounding near the threshold.
  const double area_bf16 = a["area_pixels"]["1"][0].get<double>();
  const double area_fp32 = b["area_pixels"]["1"][0].get<double>();
  EXPECT_NEAR(area_bf16, area_fp32, 0.1 * std::max(area_fp32, 100.0)) << bf16.output << fp32.output;
}

}  // namespace
}  // namespace iris
