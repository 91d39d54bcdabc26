#include <gtest/gtest.h>

#include "core/error.h"
#include "models/iris/memory_bank.h"

namespace iris::models {
namespace {

TEST(MemoryBank, FirstSightingStoresThenExponentialMovingAverage) {
  MemoryBank bank(0.9);
  bank.update("atlas", "liver", torch::full({3, 4}, 1.0));
  EXPECT_TRUE(torch::equal(bank.get("atlas", "liver"), torch::full({3, 4}, 1.0)));
  bank.update("atlas", "liver", torch::full({3, 4}, 2.0));
  EXPECT_TRUE(torch::allclose(bank.get("atlas", "liver"), torch::full({3, 4}, 0.9 * 1 + 0.1 * 2)));
  EXPECT_THROW(MemoryBank(1.0), InputError);
}

TEST(MemoryBank, DatasetsAreSeparateNamespaces) {
  MemoryBank bank;
  bank.update("amos", "1", torch::ones({2, 2}));
  bank.update("acdc", "1", -torch::ones({2, 2}));
  EXPECT_EQ(bank.size(), 2u);
  EXPECT_TRUE(torch::equal(bank.get("acdc", "1"), -torch::ones({2, 2})));
  try {
    bank.get("amos", "spleen");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no class 'spleen' for dataset 'amos' (it holds: 1)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(bank.update("a/b", "x", torch::ones({2, 2})), InputError);
}

TEST(MemoryBank, RetrievalFindsTheRightClassOnAConstructedBank) {
  torch::manual_seed(0);
  MemoryBank bank;
  std::vector<at::Tensor> prototypes;
  for (int c = 0; c < 6; ++c) {
    prototypes.push_back(torch::randn({5, 8}));
    bank.update("brain", "region" + std::to_string(c), prototypes.back());
  }
  bank.update("other", "region3", torch::randn({5, 8}));
  for (int c = 0; c < 6; ++c) {
    const auto noisy = prototypes[c] + 0.3 * torch::randn({5, 8});
    const auto best = bank.nearest(noisy, 1, "brain");
    ASSERT_EQ(best.size(), 1u);
    EXPECT_EQ(best[0].class_name, "region" + std::to_string(c));
    EXPECT_EQ(best[0].dataset, "brain");
    // Top-k weighted retrieval stays closest to the right prototype.
    const auto retrieved = bank.retrieve(noisy, 3, 0.05, "brain");
    std::vector<double> distances;
    for (const auto& p : prototypes) distances.push_back((retrieved - p).norm().item<double>());
    EXPECT_EQ(std::min_element(distances.begin(), distances.end()) - distances.begin(), c);
  }
  EXPECT_THROW(MemoryBank().retrieve(torch::ones({5, 8}), 1), InputError);
}

TEST(MemoryBank, StateRoundTripsForCheckpoints) {
  MemoryBank bank(0.5);
  bank.update("d", "a", torch::ones({2, 3}));
  bank.update("d", "a", torch::zeros({2, 3}));
  bank.update("e", "b c", torch::full({2, 3}, 4.0));
  const auto state = bank.state();
  EXPECT_EQ(state.size(), 4u);
  EXPECT_EQ(state.at("d/a#updates").item<int64_t>(), 2);
  MemoryBank restored(0.5);
  restored.load_state(state);
  EXPECT_TRUE(torch::equal(restored.get("d", "a"), bank.get("d", "a")));
  EXPECT_TRUE(torch::equal(restored.get("e", "b c"), torch::full({2, 3}, 4.0)));
  EXPECT_EQ(restored.state().at("d/a#updates").item<int64_t>(), 2);
}

}  // namespace
}  // namespace iris::models
