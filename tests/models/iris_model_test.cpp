#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include <ATen/CPUGeneratorImpl.h>

#include "core/precision.h"
#include "core/torch_compat.h"
#include "models/iris/iris_model.h"
#include "models/iris/layers.h"
#include "models/iris/position.h"

namespace iris::models {
namespace {

IrisOptions tiny(int64_t dims) {
  IrisOptions o;
  o.spatial_dims = dims;
  o.base_channels = 4;
  o.stages = 2;  // feature channels 16
  o.query_tokens = 3;
  o.heads = 2;
  o.decoder_layers = 1;
  return o;
}

TEST(IrisModel, ShapesIn2DAnd3D) {
  torch::manual_seed(0);
  for (int64_t dims : {2, 3}) {
    SCOPED_TRACE(dims);
    IrisOptions o = tiny(dims);
    o.deep_supervision = true;
    IrisModel model(o);
    const std::vector<int64_t> s =
        dims == 2 ? std::vector<int64_t>{32, 24} : std::vector<int64_t>{8, 16, 12};
    auto shape = [&](int64_t b, int64_t c) {
      std::vector<int64_t> v{b, c};
      v.insert(v.end(), s.begin(), s.end());
      return v;
    };
    const auto ref = torch::randn(shape(2, 1));
    const auto masks = (torch::rand(shape(2, 3)) > 0.5).to(torch::kFloat);
    const auto task = model->encode_task(ref, masks);
    EXPECT_EQ(task.sizes(), (std::vector<int64_t>{2, 3, 4, 16}));
    const auto out = model->segment(torch::randn(shape(2, 1)), task);
    EXPECT_EQ(out.logits.sizes(), shape(2, 3));
    ASSERT_EQ(out.auxiliary.size(), 1u);  // level 1 of 2 stages
    EXPECT_EQ(out.auxiliary[0].size(1), 3);
    EXPECT_EQ(out.auxiliary[0].size(-1), s.back() / 2);
  }
}

TEST(IrisModel, RejectsSizesNotDivisibleByTheStrides) {
  IrisModel model(tiny(2));
  EXPECT_THROW(model->encode_task(torch::randn({1, 1, 30, 32}), torch::ones({1, 1, 30, 32})),
               c10::Error);
  EXPECT_THROW(model->encode_task(torch::randn({1, 1, 32, 32}), torch::ones({1, 1, 16, 32})),
               c10::Error);
}

TEST(IrisModel, CheckpointKeysNameTheModules) {
  IrisModel model(tiny(2));
  const auto params = model->named_parameters();
  for (const char* key :
       {"encoder.stem.conv1.weight", "encoder.down.1.shortcut.weight", "task_encoder.query_tokens",
        "task_encoder.cross_attn.q_proj.weight", "decoder.layers.0.token_to_image.q_proj.weight",
        "decoder.up.0.weight", "decoder.class_embed.fc2.bias"}) {
    EXPECT_TRUE(params.contains(key)) << key;
  }
  for (const auto& item : params) {
    const std::string group = item.key().substr(0, item.key().find('.'));
    const auto groups = IrisModelImpl::parameter_groups();
    EXPECT_NE(std::find(groups.begin(), groups.end(), group), groups.end()) << item.key();
  }
}

TEST(ForegroundPool, LowResolutionPoolingEqualsPoolingUpsampledFeatures) {
  torch::manual_seed(1);
  for (int64_t dims : {2, 3}) {
    SCOPED_TRACE(dims);
    const auto features = dims == 2 ? torch::randn({2, 5, 4, 6}, torch::kDouble)
                                    : torch::randn({2, 5, 2, 4, 3}, torch::kDouble);
    const auto masks = dims == 2 ? torch::rand({2, 3, 32, 48}, torch::kDouble)
                                 : torch::rand({2, 3, 16, 32, 24}, torch::kDouble);
    const auto hard = (masks > 0.7).to(torch::kDouble);
    for (const auto& m : {masks, hard}) {
      const auto fast = foreground_pool(features, m);
      const auto naive = foreground_pool_naive(features, m);
      EXPECT_EQ(fast.sizes(), (std::vector<int64_t>{2, 3, 5}));
      EXPECT_TRUE(torch::allclose(fast, naive, 1e-10, 1e-12))
          << (fast - naive).abs().max().item<double>();
    }
    // An empty mask pools to zero rather than NaN.
    EXPECT_EQ(foreground_pool(features, torch::zeros_like(masks)).abs().sum().item<double>(), 0.0);
  }
}

TEST(IrisModel, JointDecodingDoesNotDependOnClassOrder) {
  torch::manual_seed(2);
  IrisModel model(tiny(2));
  model->eval();
  const auto ref = torch::randn({1, 1, 32, 32});
  const auto masks = (torch::rand({1, 4, 32, 32}) > 0.6).to(torch::kFloat);
  const auto query = torch::randn({1, 1, 32, 32});
  const auto order = torch::tensor({2, 0, 3, 1}, torch::kLong);
  const auto logits = model->forward(query, ref, masks).logits;
  const auto permuted = model->forward(query, ref, masks.index_select(1, order)).logits;
  EXPECT_TRUE(torch::allclose(permuted, logits.index_select(1, order), 1e-5, 1e-5))
      << (permuted - logits.index_select(1, order)).abs().max().item<float>();
  // Classes do interact (joint decoding): removing one class changes the others' logits.
  const auto fewer = model->forward(query, ref, masks.slice(1, 0, 3)).logits;
  EXPECT_FALSE(torch::allclose(fewer, logits.slice(1, 0, 3), 1e-6, 1e-6));
}

TEST(IrisModel, TinyModelOverfitsOneEpisode) {
  torch::manual_seed(3);
  IrisModel model(tiny(2));
  const auto ref = torch::randn({1, 1, 24, 24});
  auto ref_mask = torch::zeros({1, 1, 24, 24});
  ref_mask.slice(2, 6, 15).slice(3, 8, 20).fill_(1);
  const auto query = ref + 0.1 * torch::randn({1, 1, 24, 24});
  auto query_mask = torch::zeros({1, 1, 24, 24});
  query_mask.slice(2, 7, 16).slice(3, 8, 19).fill_(1);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(5e-3));
  auto loss_of = [&] {
    const auto logits = model->forward(query, ref, ref_mask).logits;
    const auto p = torch::sigmoid(logits);
    const auto dice = 1 - (2 * (p * query_mask).sum() + 1) / (p.sum() + query_mask.sum() + 1);
    return dice + torch::binary_cross_entropy_with_logits(logits, query_mask);
  };
  const double initial = loss_of().item<double>();
  double final_loss = initial;
  for (int step = 0; step < 120; ++step) {
    optimizer.zero_grad();
    const auto loss = loss_of();
    loss.backward();
    optimizer.step();
    final_loss = loss.item<double>();
  }
  EXPECT_GT(initial, 0.8);
  EXPECT_LT(final_loss, 0.1) << "initial " << initial;
}

}  // namespace
}  // namespace iris::models

namespace iris::models {
namespace {

TEST(ReferencePrior, PooledMaskRendersBackAsASmoothedCopy) {
  // A 24x24 square in a 64x64 grid: rendered back, ~1 well inside (within the Fourier estimate's
  // error), ~0 far outside, thresholded at 1/2 close to the square.
  at::Generator generator = at::detail::createCPUGenerator(7);
  const auto frequencies = at::randn({2, 512}, generator, at::kFloat) * 6.0;
  auto mask = torch::zeros({1, 1, 64, 64});
  mask.slice(2, 20, 44).slice(3, 20, 44).fill_(1);
  const auto pooled = fourier_pool(mask, frequencies, 6.0);
  EXPECT_EQ(pooled.sizes(), (std::vector<int64_t>{1, 1, 1024}));
  const auto rendered = fourier_render(pooled, frequencies, {64, 64})[0][0];
  EXPECT_NEAR(rendered.slice(0, 26, 38).slice(1, 26, 38).mean().item<double>(), 1.0, 0.4);
  EXPECT_LT(rendered.slice(0, 0, 8).mean().abs().item<double>(),
            0.1);  // Fourier noise averages out
  const double thresholded_dice = (2 * ((rendered > 0.5).to(torch::kFloat) * mask[0][0]).sum() /
                                   ((rendered > 0.5).to(torch::kFloat).sum() + mask[0][0].sum()))
                                      .item<double>();
  EXPECT_GT(thresholded_dice, 0.9);
  // 3D uses the same formulas; chunking over voxels does not change the result.
  const auto f3 = at::randn({3, 512}, generator, at::kFloat) * 4.0;
  auto cube = torch::zeros({1, 2, 40, 40, 40});
  cube[0][0].slice(0, 10, 30).slice(1, 10, 30).slice(2, 10, 30).fill_(1);
  const auto r3 = fourier_render(fourier_pool(cube, f3, 4.0), f3, {40, 40, 40});
  EXPECT_EQ(r3.sizes(), (std::vector<int64_t>{1, 2, 40, 40, 40}));
  EXPECT_NEAR(r3[0][0].slice(0, 14, 26).slice(1, 14, 26).slice(2, 14, 26).mean().item<double>(),
              1.0, 0.4);
  EXPECT_LT(r3[0][0].slice(0, 0, 4).mean().abs().item<double>(), 0.2);
  EXPECT_EQ(r3[0][1].abs().max().item<double>(), 0.0);  // an empty mask renders as nothing
}

TEST(ReferencePrior, UntrainedModelStartsFromTheSmoothedReference) {
  // With the appearance gate at 0, an untrained model's prediction is the thresholded smoothed
  // reference mask, whatever the query image: the prior rows carry the mask through the task.
  torch::manual_seed(4);
  IrisOptions o = tiny(2);
  o.prior_features = 256;
  IrisModel model(o);
  model->eval();
  auto mask = torch::zeros({1, 1, 32, 32});
  mask.slice(2, 8, 24).slice(3, 10, 26).fill_(1);
  const auto task = model->encode_task(torch::randn({1, 1, 32, 32}), mask);
  EXPECT_EQ(task.size(2), o.tokens_per_class());
  EXPECT_EQ(o.tokens_per_class(), o.query_tokens + 1 + 256 / o.feature_channels());
  const auto logits = model->segment(torch::randn({1, 1, 32, 32}), task).logits;
  const auto predicted = (logits > 0).to(torch::kFloat);
  const double dice =
      (2 * (predicted * mask).sum() / (predicted.sum() + mask.sum())).item<double>();
  EXPECT_GT(dice, 0.8);
  // The frequencies are part of the checkpoint (a buffer), equal for every model of the config.
  IrisModel other(o);
  EXPECT_TRUE(torch::equal(other->prior_frequencies, model->prior_frequencies));
  EXPECT_TRUE(model->named_buffers().contains("prior_frequencies"));
}

namespace {

double dice(const at::Tensor& predicted, const at::Tensor& truth) {
  return (2 * (predicted * truth).sum() / (predicted.sum() + truth.sum())).item<double>();
}

// A bright rectangle (the "anatomy") on a dark 64x64 field with a structure inside it at the same
// relative place: rows/cols [r0, r1) x [c0, c1), structure its upper-left quarter.
std::pair<at::Tensor, at::Tensor> scene(int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  auto image = torch::zeros({1, 1, 64, 64});
  image.slice(2, r0, r1).slice(3, c0, c1).fill_(0.8);
  auto mask = torch::zeros({1, 1, 64, 64});
  mask.slice(2, r0 + (r1 - r0) / 8, r0 + (r1 - r0) / 2)
      .slice(3, c0 + (c1 - c0) / 8, c0 + (c1 - c0) / 2)
      .fill_(1);
  return {image, mask};
}

}  // namespace

TEST(ReferencePrior, ForegroundFrameIsTheMomentsOfTheBrightVoxels) {
  const auto [image, mask] = scene(16, 48, 8, 40);
  const auto frame = foreground_frame(image);  // [1, 2, 2]
  ASSERT_EQ(frame.sizes(), (std::vector<int64_t>{1, 2, 2}));
  const auto axis = torch::linspace(-1, 1, 64);
  const auto rows = axis.slice(0, 16, 48), cols = axis.slice(0, 8, 40);
  EXPECT_NEAR(frame[0][0][0].item<double>(), rows.mean().item<double>(), 1e-5);
  EXPECT_NEAR(frame[0][0][1].item<double>(), cols.mean().item<double>(), 1e-5);
  EXPECT_NEAR(frame[0][1][0].item<double>(), rows.std(/*unbiased=*/false).item<double>(), 1e-5);
  EXPECT_NEAR(frame[0][1][1].item<double>(), cols.std(/*unbiased=*/false).item<double>(), 1e-5);
  // No foreground: the grid's own frame, so coordinates stay the grid's at any mix.
  const auto blank = foreground_frame(torch::zeros({1, 1, 64, 64}));
  EXPECT_NEAR(blank[0][0].abs().max().item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(blank[0][1][0].item<double>(), kGridStd, 1e-6);
  const auto coords = frame_coordinates({64, 64}, blank, torch::ones({2}));
  EXPECT_LT((coords[0] - grid_coordinates({64, 64}, torch::kFloat)).abs().max().item<double>(),
            1e-5);
}

TEST(ReferencePrior, PriorInTheForegroundFrameFollowsAShiftedAndScaledAnatomy) {
  // Reference anatomy large and centred; the query's is half as large and off-centre, with the
  // structure at the same relative place. On the grid the prior lands on the reference's place;
  // in the foreground frames it lands on the query's structure.
  // 2048 features at frequency 4: little Fourier noise on a structure of ~80 pixels.
  at::Generator generator = at::detail::createCPUGenerator(11);
  const auto frequencies = at::randn({2, 1024}, generator, at::kFloat) * 4.0;
  const auto [ref_image, ref_mask] = scene(8, 56, 8, 56);
  const auto [query_image, query_mask] = scene(20, 44, 30, 54);
  auto render = [&](double mix) {
    const auto m = torch::full({2}, mix);
    const auto pooled = fourier_pool(ref_mask, frequencies, 4.0,
                                     frame_coordinates({64, 64}, foreground_frame(ref_image), m));
    return fourier_render(pooled, frequencies, {64, 64},
                          frame_coordinates({64, 64}, foreground_frame(query_image), m));
  };
  const double on_grid = dice((render(0.0) > 0.5).to(torch::kFloat), query_mask);
  const double in_frame = dice((render(1.0) > 0.5).to(torch::kFloat), query_mask);
  EXPECT_LT(on_grid, 0.3);
  EXPECT_GT(in_frame, 0.8);
  // Mix 0 is exactly the grid prior.
  const auto plain =
      fourier_render(fourier_pool(ref_mask, frequencies, 4.0), frequencies, {64, 64});
  EXPECT_LT((render(0.0) - plain).abs().max().item<double>(), 1e-4);
  // A batch with per-item coordinates equals its items one by one.
  const auto images = torch::cat({ref_image, query_image}),
             masks = torch::cat({ref_mask, query_mask});
  const auto coords = frame_coordinates({64, 64}, foreground_frame(images), torch::full({2}, 0.7));
  const auto both = fourier_pool(masks, frequencies, 4.0, coords);
  for (int64_t i = 0; i < 2; ++i) {
    const auto one =
        fourier_pool(masks.slice(0, i, i + 1), frequencies, 4.0, coords.slice(0, i, i + 1));
    EXPECT_LT((both.slice(0, i, i + 1) - one).abs().max().item<double>(), 1e-5);
  }
}

// An elongated "anatomy" (ellipse) with a structure at one end, rotated by `degrees` about the
// image centre and shifted by (dy, dx) pixels.
std::pair<at::Tensor, at::Tensor> rotated_scene(double degrees, double dy, double dx) {
  const auto axis = torch::arange(64, torch::kFloat) - 31.5;
  const auto y = axis.view({64, 1}) - dy, x = axis.view({1, 64}) - dx;
  const double a = degrees * M_PI / 180.0, c = std::cos(a), s = std::sin(a);
  const auto u = y * c + x * s, v = x * c - y * s;  // coordinates in the anatomy's own frame
  const auto inside = (u / 26).pow(2) + (v / 14).pow(2) <= 1;
  const auto structure = inside & (u < -10) & (v > 0);
  return {(inside.to(torch::kFloat) * 0.8).view({1, 1, 64, 64}),
          structure.to(torch::kFloat).view({1, 1, 64, 64})};
}

TEST(ReferencePrior, PrincipalAxesFrameFollowsARotatedAnatomy) {
  at::Generator generator = at::detail::createCPUGenerator(3);
  const auto frequencies = at::randn({2, 1024}, generator, at::kFloat) * 4.0;
  const auto [ref_image, ref_mask] = rotated_scene(0, 0, 0);
  const auto [query_image, query_mask] = rotated_scene(25, 4, -5);
  const auto frame = foreground_frame(query_image, true);  // [1, 4, 2]
  ASSERT_EQ(frame.sizes(), (std::vector<int64_t>{1, 4, 2}));
  // The rotation's columns are unit vectors, and the long axis stays the row axis.
  const auto rotation = frame[0].narrow(0, 2, 2);
  EXPECT_LT((at::matmul(rotation.t(), rotation) - at::eye(2)).abs().max().item<double>(), 1e-4);
  EXPECT_GT(frame[0][1][0].item<double>(), frame[0][1][1].item<double>());
  EXPECT_NEAR(std::acos(std::abs(rotation[0][0].item<double>())) * 180 / M_PI, 25, 1.0);
  auto render = [&](bool axes) {
    const auto m = torch::ones({2});
    const auto pooled = fourier_pool(
        ref_mask, frequencies, 4.0,
        frame_coordinates({64, 64}, foreground_frame(ref_image, axes), m));
    return fourier_render(pooled, frequencies, {64, 64},
                          frame_coordinates({64, 64}, foreground_frame(query_image, axes), m));
  };
  const double shifted_only = dice((render(false) > 0.5).to(torch::kFloat), query_mask);
  const double turned = dice((render(true) > 0.5).to(torch::kFloat), query_mask);
  std::cout << "[measure] prior Dice on a query turned 25 degrees: shift/scale frame "
            << shifted_only << ", principal axes " << turned << "\n";
  EXPECT_GT(turned, 0.75);
  EXPECT_GT(turned, shifted_only + 0.1);
}

TEST(ReferencePrior, FrameMixStartsAtTheGridAndLearns) {
  torch::manual_seed(5);
  IrisOptions o = tiny(2);
  o.prior_features = 2048;
  o.prior_frequency = 4.0;
  IrisModel plain(o);
  o.prior_frame = true;
  torch::manual_seed(5);
  IrisModel framed(o);
  ASSERT_TRUE(framed->decoder->named_parameters().contains("prior_frame_mix"));
  EXPECT_EQ(framed->decoder->prior_frame_mix.sizes(), (std::vector<int64_t>{2}));
  const auto [ref_image, ref_mask] = scene(8, 56, 8, 56);
  const auto [query_image, query_mask] = scene(20, 44, 30, 54);
  // Untrained (mix 0): the same network as without the option.
  const auto a = plain->forward(query_image, ref_image, ref_mask).logits;
  const auto b = framed->forward(query_image, ref_image, ref_mask).logits;
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
  // The loss reaches the mix, and a mix of 1 follows the query's anatomy.
  const auto loss = torch::binary_cross_entropy_with_logits(b, query_mask);
  loss.backward();
  ASSERT_TRUE(framed->decoder->prior_frame_mix.grad().defined());
  EXPECT_GT(framed->decoder->prior_frame_mix.grad().abs().sum().item<double>(), 0.0);
  {
    torch::NoGradGuard no_grad;
    framed->decoder->prior_frame_mix.fill_(1.0);
  }
  framed->eval();
  const auto moved = framed->forward(query_image, ref_image, ref_mask).logits;
  EXPECT_GT(dice((moved > 0).to(torch::kFloat), query_mask), 0.7);
  // Starting in the foreground frame is an option of its own.
  o.prior_frame_init = 1.0;
  IrisModel started(o);
  EXPECT_TRUE(torch::equal(started->decoder->prior_frame_mix, torch::ones({2})));
}

// LibTorch 2.x's CPU bf16 conv3d returns garbage weight gradients (often NaN, different on each
// call) for maps thinner than the kernel, as the deepest stage of a 3D patch gets; the 3D conv
// must give the float32 gradient to bf16 precision there, every time.
TEST(IrisLayers, Bf16Conv3dOnMapsThinnerThanTheKernelHasTheFloat32WeightGradient) {
#if !IRIS_TORCH_AT_LEAST(2, 0)
  GTEST_SKIP() << "mixed precision on CPU needs LibTorch 2.x";
#endif
  torch::manual_seed(0);
  Conv conv(ConvOptions{3, 8, 16, 3, 1, false});
  const at::Tensor x = torch::randn({1, 8, 2, 16, 16});
  auto weight_grad = [&](Precision precision) {
    conv->zero_grad();
    {
      AutocastScope autocast(c10::DeviceType::CPU, precision);
      conv->forward(x).to(at::kFloat).sum().backward();
    }
    return conv->weight.grad().clone();
  };
  const at::Tensor reference = weight_grad(Precision::kFloat32);
  for (int repeat = 0; repeat < 8; ++repeat) {
    // Freed buffers full of NaN: the faulty kernel reads memory it never wrote.
    { const at::Tensor junk = torch::full({1 << 18}, NAN); }
    const at::Tensor g = weight_grad(Precision::kBFloat16);
    ASSERT_TRUE(torch::isfinite(g).all().item<bool>()) << "repeat " << repeat;
    EXPECT_LT((g - reference).abs().max().item<double>(),
              0.02 * reference.abs().max().item<double>())
        << "repeat " << repeat;
  }
}

}  // namespace
}  // namespace iris::models
