#include <gtest/gtest.h>

#include <cmath>

#include "eval/metrics.h"
#include "io/checkpoint.h"
#include "test_util.h"

namespace iris::eval {
namespace {

// [1, 1, H, W] from rows of '#' and '.'.
at::Tensor mask(const std::vector<std::string>& rows) {
  auto m = torch::zeros({1, 1, static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())},
                        torch::kBool);
  for (size_t y = 0; y < rows.size(); ++y) {
    for (size_t x = 0; x < rows[y].size(); ++x) m[0][0][y][x] = rows[y][x] == '#';
  }
  return m;
}

TEST(Metrics, HandComputedOverlapAndEmptyRules) {
  const auto p = mask({"##..", "##..", "....", "...."});
  const auto g = mask({"#...", "##..", "#...", "...."});
  // |P| = 4, |G| = 4, |P∩G| = 3, |P∪G| = 5
  EXPECT_DOUBLE_EQ(dice(p, g)[0][0].item<double>(), 6.0 / 8.0);
  EXPECT_DOUBLE_EQ(iou(p, g)[0][0].item<double>(), 3.0 / 5.0);
  EXPECT_DOUBLE_EQ(mean_absolute_error(p, g)[0][0].item<double>(), 2.0 / 16.0);

  const auto empty = mask({"....", "....", "....", "...."});
  MetricOptions keep;
  keep.ignore_empty = false;
  EXPECT_TRUE(std::isnan(dice(empty, empty)[0][0].item<double>()));  // ignored by default
  EXPECT_DOUBLE_EQ(dice(empty, empty, keep)[0][0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(dice(p, empty, keep)[0][0].item<double>(), 0.0);  // false positive on empty truth
  EXPECT_DOUBLE_EQ(dice(empty, g)[0][0].item<double>(), 0.0);        // empty prediction
  EXPECT_DOUBLE_EQ(iou(empty, empty, keep)[0][0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(mean_absolute_error(empty, empty)[0][0].item<double>(), 0.0);
  EXPECT_THROW(mean_absolute_error(p.to(torch::kFloat) * 255, g), c10::Error);

  // include_background drops channel 0.
  const auto two = torch::cat({p, p}, 1), twog = torch::cat({g, empty}, 1);
  MetricOptions no_bg;
  no_bg.include_background = false;
  no_bg.ignore_empty = false;
  EXPECT_EQ(dice(two, twog, no_bg).sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_DOUBLE_EQ(dice(two, twog, no_bg)[0][0].item<double>(), 0.0);
}

TEST(Metrics, BoundaryAndSurfaceDistances) {
  const auto square = mask({".....", ".###.", ".###.", ".###.", "....."})[0][0];
  const auto b = boundary(square);
  EXPECT_EQ(b.sum().item<int64_t>(), 8);  // the ring around the centre pixel
  EXPECT_FALSE(b[2][2].item<bool>());
  // A mask touching the image border has its border pixels as boundary.
  EXPECT_EQ(boundary(torch::ones({3, 3}, torch::kBool)).sum().item<int64_t>(), 8);

  // Shifted by one column: every boundary pixel is within 1 of the other boundary.
  const auto shifted = mask({".....", "..###", "..###", "..###", "....."});
  const auto p = mask({".....", ".###.", ".###.", ".###.", "....."});
  EXPECT_DOUBLE_EQ(surface_dice(p, shifted, 1.0)[0][0].item<double>(), 1.0);
  EXPECT_LT(surface_dice(p, shifted, 0.5)[0][0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(hausdorff_distance(p, shifted, 100.0)[0][0].item<double>(), 1.0);
  // Spacing scales distances.
  EXPECT_DOUBLE_EQ(hausdorff_distance(p, shifted, 100.0, {1.0, 2.5})[0][0].item<double>(), 2.5);
  const auto empty = mask({".....", ".....", ".....", ".....", "....."});
  EXPECT_TRUE(std::isnan(surface_dice(empty, empty, 1.0)[0][0].item<double>()));
  EXPECT_DOUBLE_EQ(surface_dice(p, empty, 1.0)[0][0].item<double>(), 0.0);
  EXPECT_TRUE(std::isnan(hausdorff_distance(p, empty)[0][0].item<double>()));
}

TEST(Metrics, AggregationIsFrameThenVideoThenClass) {
  // Class a: video 1 has frames 1.0 and 0.0 (mean 0.5), video 2 has 1.0 -> class mean 0.75,
  // not the frame mean 2/3. Class b: one NaN (left out) and 0.5.
  const double nan = std::nan("");
  const auto a = aggregate({{"v1", 0, "a", 1.0}, {"v1", 1, "a", 0.0}, {"v2", 0, "a", 1.0},
                            {"v1", 0, "b", nan}, {"v2", 3, "b", 0.5}});
  EXPECT_DOUBLE_EQ(a.per_video_class.at("a").at("v1"), 0.5);
  EXPECT_DOUBLE_EQ(a.per_class.at("a"), 0.75);
  EXPECT_DOUBLE_EQ(a.per_class.at("b"), 0.5);
  EXPECT_EQ(a.per_video_class.at("b").count("v1"), 0u);
  EXPECT_DOUBLE_EQ(a.macro, 0.625);
  EXPECT_EQ(a.scored, 4);
  EXPECT_EQ(a.skipped, 1);
}

void expect_same(const at::Tensor& ours, const at::Tensor& monai, const std::string& what) {
  ASSERT_EQ(ours.sizes(), monai.sizes()) << what;
  for (int64_t i = 0; i < ours.size(0); ++i) {
    for (int64_t j = 0; j < ours.size(1); ++j) {
      const double a = ours[i][j].item<double>(), b = monai[i][j].item<double>();
      if (std::isnan(b)) {
        EXPECT_TRUE(std::isnan(a)) << what << " [" << i << "," << j << "] ours " << a;
      } else {
        // MONAI works in float32.
        EXPECT_NEAR(a, b, 1e-6 * std::max(1.0, std::abs(b))) << what << " [" << i << "," << j << "]";
      }
    }
  }
}

TEST(Metrics, AgreeWithMonaiOnRandomMasks) {
  if (test::venv_python().empty()) GTEST_SKIP() << "needs .venv/bin/python";
  test::TempDir dir;
  const auto script = std::string(IRIS_SOURCE_DIR) + "/tests/eval/monai_reference.py";
  const auto r = test::run_command("'" + test::venv_python().string() + "' '" + script + "' '" +
                                   (dir / "ref.safetensors").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = io::read_safetensors(dir / "ref.safetensors").tensors;
  auto get = [&](const std::string& k) { return *ref.find(k); };
  const auto p = get("pred").to(torch::kBool), g = get("truth").to(torch::kBool);
  for (const bool bg : {true, false}) {
    for (const bool ie : {true, false}) {
      const std::string tag = std::string(bg ? "1" : "0") + (ie ? "1" : "0");
      MetricOptions o;
      o.include_background = bg;
      o.ignore_empty = ie;
      expect_same(dice(p, g, o), get("dice_" + tag), "dice_" + tag);
      expect_same(iou(p, g, o), get("iou_" + tag), "iou_" + tag);
    }
  }
  expect_same(surface_dice(p, g, 2.0), get("nsd_t2"), "nsd");
  expect_same(surface_dice(p, g, 1.0, {0.7, 1.3}), get("nsd_t1_spacing"), "nsd spacing");
  expect_same(hausdorff_distance(p, g, 95.0), get("hd95"), "hd95");
  expect_same(hausdorff_distance(p, g, 95.0, {0.7, 1.3}), get("hd95_spacing"), "hd95 spacing");
}

}  // namespace
}  // namespace iris::eval
