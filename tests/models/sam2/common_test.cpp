#include <gtest/gtest.h>

#include <cmath>

#include "models/sam2/common.h"

namespace iris::models::sam2 {
namespace {

TEST(Sam2Common, SinePositionEncodingMatchesFormula) {
  PositionEmbeddingSine pe(PositionEmbeddingSineOptions{8});
  const auto out = pe->forward(torch::zeros({2, 3, 4, 5}));
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 8, 4, 5}));
  // Channel c of the y half at row i: dim_t = 1e4^(2*(c/2)/4); even c -> sin, odd c -> cos.
  const double scale = 2 * M_PI;
  for (int64_t c = 0; c < 4; ++c) {
    const double dim_t = std::pow(1e4, 2.0 * (c / 2) / 4.0);
    for (int64_t i = 0; i < 4; ++i) {
      const double y = (i + 1) / (4 + 1e-6) * scale / dim_t;
      const double want = c % 2 == 0 ? std::sin(y) : std::cos(y);
      EXPECT_NEAR(out[1][c][i][2].item<double>(), want, 1e-6);
    }
    for (int64_t j = 0; j < 5; ++j) {
      const double x = (j + 1) / (5 + 1e-6) * scale / dim_t;
      const double want = c % 2 == 0 ? std::sin(x) : std::cos(x);
      EXPECT_NEAR(out[0][4 + c][3][j].item<double>(), want, 1e-6);
    }
  }
}

TEST(Sam2Common, LayerNorm2dNormalisesChannels) {
  LayerNorm2d ln(3);
  const auto x = torch::randn({2, 3, 4, 4});
  const auto y = ln->forward(x);
  EXPECT_TRUE(torch::allclose(y.mean(1), torch::zeros({2, 4, 4}), 1e-5, 1e-5));
  const auto ref = at::layer_norm(x.permute({0, 2, 3, 1}), {3}, {}, {}, 1e-6).permute({0, 3, 1, 2});
  EXPECT_TRUE(torch::allclose(y, ref, 1e-5, 1e-5));
}

TEST(Sam2Common, MlpKeysAndShapes) {
  Mlp mlp(MlpOptions{8, 16, 4, 3});
  const auto params = mlp->named_parameters();
  EXPECT_EQ(params.size(), 6u);
  EXPECT_TRUE(params.contains("layers.2.weight"));
  EXPECT_EQ(params["layers.2.weight"].sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(mlp->forward(torch::randn({5, 8})).sizes(), (std::vector<int64_t>{5, 4}));
}

}  // namespace
}  // namespace iris::models::sam2
