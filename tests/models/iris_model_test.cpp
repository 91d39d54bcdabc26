#include <gtest/gtest.h>

#include "models/iris/iris_model.h"

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
    const std::vector<int64_t> s = dims == 2 ? std::vector<int64_t>{32, 24} : std::vector<int64_t>{8, 16, 12};
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
  EXPECT_THROW(model->encode_task(torch::randn({1, 1, 30, 32}), torch::ones({1, 1, 30, 32})), c10::Error);
  EXPECT_THROW(model->encode_task(torch::randn({1, 1, 32, 32}), torch::ones({1, 1, 16, 32})), c10::Error);
}

TEST(IrisModel, CheckpointKeysNameTheModules) {
  IrisModel model(tiny(2));
  const auto params = model->named_parameters();
  for (const char* key : {"encoder.stem.conv1.weight", "encoder.down.1.shortcut.weight",
                          "task_encoder.query_tokens", "task_encoder.cross_attn.q_proj.weight",
                          "decoder.layers.0.token_to_image.q_proj.weight", "decoder.up.0.weight",
                          "decoder.class_embed.fc2.bias"}) {
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
