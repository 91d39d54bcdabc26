// Mixed precision on CPU: the precision setting, autocast scopes (bf16 matmuls inside, float32
// after, nesting), the fp16 loss scaler, clipping without a readback, device and layout helpers.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "core/device.h"
#include "core/error.h"
#include "core/precision.h"
#include "core/torch_compat.h"

namespace iris {
namespace {

TEST(Precision, ParsesTheThreeNamesAndRejectsOthersNamingThem) {
  EXPECT_EQ(parse_precision("fp32"), Precision::kFloat32);
  EXPECT_EQ(parse_precision("bf16"), Precision::kBFloat16);
  EXPECT_EQ(parse_precision("fp16"), Precision::kFloat16);
  for (const auto p : {Precision::kFloat32, Precision::kBFloat16, Precision::kFloat16}) {
    EXPECT_EQ(parse_precision(to_string(p)), p);
  }
  EXPECT_EQ(autocast_dtype(Precision::kBFloat16), at::kBFloat16);
  EXPECT_EQ(autocast_dtype(Precision::kFloat16), at::kHalf);
  EXPECT_EQ(autocast_dtype(Precision::kFloat32), at::kFloat);
  try {
    parse_precision("float16");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'float16'"), std::string::npos) << message;
    EXPECT_NE(message.find("fp32, bf16 or fp16"), std::string::npos) << message;
  }
  EXPECT_THROW(parse_precision(""), ConfigError);
}

TEST(AutocastScope, Bf16MatmulInsideFloat32AfterAndStateRestored) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  const at::Tensor a = at::randn({4, 8}), b = at::randn({8, 3});
  // The float32 product of the bf16-rounded inputs, computed before the scope.
  const at::Tensor rounded =
      at::matmul(a.to(at::kBFloat16).to(at::kFloat), b.to(at::kBFloat16).to(at::kFloat));
  ASSERT_FALSE(autocast_enabled(c10::kCPU));
  {
    AutocastScope scope(c10::kCPU, Precision::kBFloat16);
    EXPECT_TRUE(scope.active());
    EXPECT_TRUE(autocast_enabled(c10::kCPU));
    const at::Tensor inside = at::matmul(a, b);
    EXPECT_EQ(inside.scalar_type(), at::kBFloat16);
    // Same values up to bf16 rounding of the result (8 bits of mantissa).
    EXPECT_TRUE(at::allclose(inside.to(at::kFloat), rounded, 2e-2, 2e-2));
    // Ops outside autocast's lists keep their inputs' dtype.
    EXPECT_EQ((a + 1).scalar_type(), at::kFloat);
  }
  EXPECT_FALSE(autocast_enabled(c10::kCPU));
  EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kFloat);
}

TEST(AutocastScope, NestedScopesRestoreTheEnclosingOne) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  const at::Tensor a = at::randn({4, 8}), b = at::randn({8, 3});
  {
    AutocastScope outer(c10::kCPU, Precision::kBFloat16);
    {
      // fp32 is a no-op: it neither switches the enclosing scope off nor changes its dtype.
      AutocastScope same(c10::kCPU, Precision::kFloat32);
      EXPECT_FALSE(same.active());
      EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kBFloat16);
    }
#if IRIS_TORCH_AT_LEAST(2, 0)
    {
      AutocastScope inner(c10::kCPU, Precision::kFloat16);
      EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kHalf);
      {
        AutocastScope innermost(c10::kCPU, Precision::kBFloat16);
        EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kBFloat16);
      }
      EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kHalf);
    }
#else
    EXPECT_THROW(AutocastScope(c10::kCPU, Precision::kFloat16), NotAvailableError);
#endif
    EXPECT_TRUE(autocast_enabled(c10::kCPU));
    EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(autocast_enabled(c10::kCPU));
  EXPECT_EQ(at::matmul(a, b).scalar_type(), at::kFloat);
  // A CPU scope leaves CUDA's autocast state alone.
  { AutocastScope cpu(c10::kCPU, Precision::kBFloat16); }
  EXPECT_FALSE(autocast_enabled(c10::kCUDA));
}

TEST(AutocastScope, GradientsFlowToFloat32WeightsThroughBf16Ops) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x (NotAvailableError on 1.13)";
#endif
  const at::Tensor w = at::randn({8, 3}).requires_grad_();
  const at::Tensor x = at::randn({4, 8});
  at::Tensor y;
  {
    AutocastScope scope(c10::kCPU, Precision::kBFloat16);
    y = at::matmul(x, w);
  }
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  y.to(at::kFloat).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().scalar_type(), at::kFloat);
  // d(sum(x·w))/dw = column sums of x, broadcast over w's columns.
  const at::Tensor expected = x.sum(0).unsqueeze(1).expand({8, 3});
  EXPECT_TRUE(at::allclose(w.grad(), expected, 5e-2, 5e-2));
}

TEST(LossScaler, InfiniteGradientSkipsTheStepAndHalvesTheScale) {
  LossScaler scaler;
  EXPECT_EQ(scaler.scale_value(), 65536.0);
  const at::Tensor p = at::zeros({3}).requires_grad_();
  const at::Tensor q = at::zeros({2}).requires_grad_();
  p.mutable_grad() = at::tensor({1.f, std::numeric_limits<float>::infinity(), 2.f});
  q.mutable_grad() = at::ones({2});
  EXPECT_FALSE(scaler.unscale_and_check({p, q}));
  scaler.update(false);
  EXPECT_EQ(scaler.scale_value(), 32768.0);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  p.mutable_grad() = at::tensor({1.f, std::nanf(""), 2.f});
  EXPECT_FALSE(scaler.unscale_and_check({p}));
  // Parameters without gradients do not count.
  const at::Tensor unused = at::zeros({2}).requires_grad_();
  EXPECT_TRUE(scaler.unscale_and_check({unused}));
}

TEST(LossScaler, ScaleAndUnscaleGiveBackTheGradient) {
  LossScaler scaler;
  const at::Tensor w = at::randn({5}).requires_grad_();
  const at::Tensor x = at::randn({5});
  const at::Tensor loss = (w * x).sum();
  const at::Tensor scaled = scaler.scale(loss);
  EXPECT_NEAR(scaled.item<double>(), loss.item<double>() * 65536.0,
              1e-3 * std::abs(loss.item<double>() * 65536.0) + 1e-3);
  scaled.backward();
  EXPECT_TRUE(at::allclose(w.grad(), x * 65536.0));
  EXPECT_TRUE(scaler.unscale_and_check({w}));
  // A power-of-two scale divides exactly.
  EXPECT_TRUE(at::equal(w.grad(), x)) << w.grad() << x;
}

TEST(LossScaler, GrowsAfterTheGrowthIntervalOfFiniteSteps) {
  LossScaler defaults;
  for (int i = 0; i < 1999; ++i) defaults.update(true);
  EXPECT_EQ(defaults.scale_value(), 65536.0);
  EXPECT_EQ(defaults.growth_tracker(), 1999);
  defaults.update(true);
  EXPECT_EQ(defaults.scale_value(), 131072.0) << "2000 finite steps double the scale";
  EXPECT_EQ(defaults.growth_tracker(), 0);

  LossScalerOptions o;
  o.init_scale = 8;
  o.growth_interval = 3;
  LossScaler scaler(o);
  scaler.update(true);
  scaler.update(true);
  scaler.update(false);  // an overflow resets the count
  scaler.update(true);
  scaler.update(true);
  EXPECT_EQ(scaler.scale_value(), 4.0);
  scaler.update(true);
  EXPECT_EQ(scaler.scale_value(), 8.0);
  o.growth_interval = 0;
  EXPECT_THROW(LossScaler{o}, ConfigError);
}

TEST(LossScaler, StateRoundTripsThroughTensors) {
  LossScalerOptions o;
  o.growth_interval = 10;
  LossScaler a(o);
  a.update(false);
  for (int i = 0; i < 4; ++i) a.update(true);
  const auto state = a.state_dict();
  ASSERT_EQ(state.count("scale"), 1u);
  ASSERT_EQ(state.count("growth_tracker"), 1u);
  LossScaler b(o);
  b.load_state_dict(state);
  EXPECT_EQ(b.scale_value(), a.scale_value());
  EXPECT_EQ(b.growth_tracker(), 4);
  for (int i = 0; i < 6; ++i) {
    a.update(true);
    b.update(true);
  }
  EXPECT_EQ(b.scale_value(), a.scale_value());
  EXPECT_EQ(b.scale_value(), 65536.0);
  EXPECT_THROW(b.load_state_dict({{"scale", at::scalar_tensor(2.0)}}), InputError);
  EXPECT_THROW(b.load_state_dict(
                   {{"scale", at::scalar_tensor(-2.0)}, {"growth_tracker", at::scalar_tensor(0)}}),
               InputError);
}

TEST(ClipGradNorm, EqualsLibTorchsClippingWithoutReadingTheNormBack) {
  auto make = [] {
    torch::manual_seed(3);
    std::vector<at::Tensor> params{at::randn({4, 3}).requires_grad_(),
                                   at::randn({7}).requires_grad_(),
                                   at::randn({2}).requires_grad_()};
    params[0].mutable_grad() = at::randn({4, 3}) * 5;
    params[1].mutable_grad() = at::randn({7}) * 5;
    return params;  // params[2] has no gradient
  };
  auto ours = make(), theirs = make();
  const at::Tensor norm = clip_grad_norm(ours, 1.0);
  const double expected = torch::nn::utils::clip_grad_norm_(theirs, 1.0);
  EXPECT_DOUBLE_EQ(norm.item<double>(), expected);
  for (std::size_t i = 0; i < 2; ++i) EXPECT_TRUE(at::equal(ours[i].grad(), theirs[i].grad()));
  EXPECT_FALSE(ours[2].grad().defined());
  // Below the limit nothing changes.
  auto small = make();
  const at::Tensor before = small[0].grad().clone();
  clip_grad_norm(small, 1e6);
  EXPECT_TRUE(at::equal(small[0].grad(), before));
}

TEST(DeviceHelpers, ToDeviceOnCpuAndChannelsLastLayouts) {
  const at::Tensor x = at::randn({2, 3, 4, 5});
  EXPECT_TRUE(to_device(x, c10::Device(c10::kCPU)).is_same(x)) << "already there: no copy";
  const at::Tensor cl = to_channels_last(x);
  EXPECT_TRUE(cl.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::equal(cl, x));
  const at::Tensor v = at::randn({1, 2, 3, 4, 5});
  EXPECT_TRUE(to_channels_last(v).is_contiguous(at::MemoryFormat::ChannelsLast3d));
  const at::Tensor flat = at::randn({3, 4});
  EXPECT_TRUE(to_channels_last(flat).is_same(flat));

  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3));
  const at::Tensor weight_before = conv->weight.detach().clone();
  const at::Tensor out_before = conv(x).detach();
  to_channels_last(*conv);
  EXPECT_TRUE(conv->weight.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::equal(conv->weight, weight_before));
  EXPECT_TRUE(at::allclose(conv(to_channels_last(x)), out_before, 1e-5, 1e-5));
  EXPECT_EQ(conv->named_parameters()["weight"].data_ptr(), conv->weight.data_ptr());
}

}  // namespace
}  // namespace iris
