// The one preprocessing path: percentiles, intensity by modality, reorientation, spacing, crop,
// and the way back onto the file's grid.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "data/preprocess.h"
#include "test_util.h"

namespace iris {
namespace {

TEST(Preprocess, PercentileIsNumpysLinearDefinitionForAnySize) {
  const at::Tensor v = torch::arange(1, 11, torch::kFloat).flip({0});  // 10 .. 1, unsorted
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 10.0);
  EXPECT_NEAR(percentile(v, 2), 1.18, 1e-12);  // np.percentile(range(1, 11), 2)
  EXPECT_NEAR(percentile(v, 98), 9.82, 1e-12);
  EXPECT_NEAR(percentile(v, 50), 5.5, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(at::ones({1}), 37), 1.0);
  // Beyond quantile()'s 16M-element limit: 2^24 + 3 values 0..n-1, exact.
  const int64_t n = (int64_t{1} << 24) + 3;
  const at::Tensor big = torch::arange(n, torch::kDouble);
  EXPECT_NEAR(percentile(big, 98), 0.98 * static_cast<double>(n - 1), 1e-6);
  EXPECT_THROW(percentile(at::empty({0}), 50), InputError);
}

TEST(Preprocess, CtIsWindowedThenZScoredAndMrUsesItsNonZeroPercentiles) {
  torch::manual_seed(0);
  // CT in HU: air, soft tissue and bone beyond the window.
  at::Tensor ct = torch::full({1, 8, 8, 8}, -1000.0);
  ct.narrow(1, 2, 4).fill_(40);
  ct.narrow(1, 2, 1).narrow(2, 0, 2).fill_(1500);
  PreprocessOptions options;
  const at::Tensor z = normalize_intensity(ct, Modality::kCT, options);
  const at::Tensor clipped = ct.clamp(-990, 500).to(torch::kDouble);
  const double mean = clipped.mean().item<double>(), std = clipped.std().item<double>();
  EXPECT_NEAR(z.max().item<double>(), (500 - mean) / std, 1e-5) << "bone clipped at 500 HU";
  EXPECT_NEAR(z.min().item<double>(), (-990 - mean) / std, 1e-5) << "air clipped at -990 HU";
  EXPECT_NEAR(z.mean().item<double>(), 0, 1e-5);
  EXPECT_NEAR(z.to(torch::kDouble).std().item<double>(), 1, 1e-5);

  // MR: zero background, brain values 1..100; percentiles of the non-zero voxels only.
  at::Tensor mr = torch::zeros({1, 10, 10, 10});
  mr.view({-1}).narrow(0, 0, 100).copy_(torch::arange(1, 101, torch::kFloat));
  const at::Tensor m = normalize_intensity(mr, Modality::kMR, options);
  const double lo = 1 + 0.02 * 99, hi = 1 + 0.98 * 99;  // np.percentile(1..100, [2, 98])
  const at::Tensor kept = torch::arange(1, 101, torch::kDouble).clamp(lo, hi);
  const double km = kept.mean().item<double>(), ks = kept.std().item<double>();
  EXPECT_NEAR(m.view({-1})[0].item<double>(), (lo - km) / ks, 1e-5);
  EXPECT_NEAR(m.view({-1})[99].item<double>(), (hi - km) / ks, 1e-5);
  EXPECT_NEAR(m.view({-1})[500].item<double>(), (lo - km) / ks, 1e-5)
      << "background clipped to the low percentile";
}

TEST(Preprocess, ModalityNamesOfDatasetJson) {
  EXPECT_EQ(parse_modality("CT"), Modality::kCT);
  EXPECT_EQ(parse_modality("ct"), Modality::kCT);
  EXPECT_EQ(parse_modality("T2"), Modality::kMR);
  EXPECT_EQ(parse_modality("FLAIR"), Modality::kMR);
  EXPECT_EQ(parse_modality("MRI"), Modality::kMR);
  EXPECT_EQ(parse_modality("PET"), Modality::kPET);
  EXPECT_EQ(parse_modality("endoscopy"), Modality::kOther);
}

// A label map stored LAS (i points left) with an oblique, anisotropic affine.
Volume las_volume(const at::Tensor& data) {
  Volume v;
  v.data = data;
  const double c = std::cos(0.2), s = std::sin(0.2);
  // Columns: i along -x (0.8 mm), j along y rotated about x (0.8 mm), k along z (2.5 mm).
  v.affine.m = {-0.8, 0, 0, 40, 0, 0.8 * c, -2.5 * s, -20, 0, 0.8 * s, 2.5 * c, 10, 0, 0, 0, 1};
  return v;
}

TEST(Preprocess, ReorientsToRasAndMapsLabelsBackExactly) {
  torch::manual_seed(1);
  const at::Tensor labels = torch::randint(0, 3, {6, 10, 12}, torch::kLong);
  const Volume image = las_volume(labels.to(torch::kFloat) * 100 + 1);
  Volume label_volume = las_volume(labels);
  PreprocessOptions options;
  options.crop_foreground = false;
  const PreparedVolume p = prepare_volume(image, &label_volume, Modality::kMR, options);
  EXPECT_EQ(orientation_codes(p.geometry.affine), "RAS");
  EXPECT_EQ(orientation_codes(p.geometry.source_affine), "LAS");
  ASSERT_EQ(p.image.dim(), 4);
  // Reorientation alone moves voxels without interpolation: the way back is exact.
  const Volume back = restore_labels(p.labels, p.geometry);
  EXPECT_TRUE(at::equal(back.data.to(torch::kLong), labels));
  for (int i = 0; i < 16; ++i) EXPECT_DOUBLE_EQ(back.affine.m[i], image.affine.m[i]);
}

TEST(Preprocess, ResamplesToTheSpacingAndCropsToTheForegroundWithoutCuttingLabels) {
  // A 2.5 mm-thick ball on a zero background.
  const int64_t nk = 12, nj = 40, ni = 40;
  const auto k = torch::arange(nk).view({nk, 1, 1}).to(torch::kFloat) * 2.5;
  const auto j = torch::arange(nj).view({1, nj, 1}).to(torch::kFloat) * 0.8;
  const auto i = torch::arange(ni).view({1, 1, ni}).to(torch::kFloat) * 0.8;
  const at::Tensor ball = ((k - 15).pow(2) + (j - 16).pow(2) + (i - 16).pow(2)) < 64;  // r 8 mm
  Volume image = las_volume(ball.to(torch::kFloat) * 200);
  Volume labels = las_volume(ball.to(torch::kShort));
  PreprocessOptions options;
  options.spacing = {1.0, 1.0, 1.0};
  const PreparedVolume p = prepare_volume(image, &labels, Modality::kMR, options);
  const auto spacing = p.geometry.affine.spacing();
  for (double s : spacing) EXPECT_NEAR(s, 1.0, 1e-6);  // float32, as NIfTI stores it
  // Cropped to the ball: about 16 mm (16 voxels) across per axis, never smaller than it.
  for (int64_t d = 0; d < 3; ++d) {
    EXPECT_GE(p.image.size(d + 1), 14) << "axis " << d;
    EXPECT_LE(p.image.size(d + 1), 20) << "axis " << d;
  }
  const double volume_mm3 = p.labels.sum().item<double>();  // 1 mm^3 voxels
  EXPECT_NEAR(volume_mm3, 4.0 / 3.0 * M_PI * 512, 0.2 * 4.0 / 3.0 * M_PI * 512);
  // Back onto the source grid: most of the ball survives the round trip.
  const Volume back = restore_labels(p.labels, p.geometry);
  const at::Tensor truth = ball.to(torch::kLong);
  const double overlap = (back.data.to(torch::kLong) * truth).sum().item<double>();
  const double dice = 2 * overlap / (back.data.sum().item<double>() + truth.sum().item<double>());
  EXPECT_GT(dice, 0.9);
  EXPECT_THROW(prepare_volume(image, &labels, Modality::kMR,
                              [] {
                                PreprocessOptions o;
                                o.spacing = {1, 1};
                                return o;
                              }()),
               ConfigError);
}

}  // namespace
}  // namespace iris
