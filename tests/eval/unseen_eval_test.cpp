#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "eval/iris_unseen_eval.h"

namespace iris {
namespace {

// A synthetic "atlas": 24 slices; structure 1 is the same box on every slice (copying the
// reference mask is then exact), structure 2 drifts across slices.
MricronAtlas synthetic_atlas() {
  MricronAtlas atlas;
  atlas.image.data = torch::rand({24, 40, 40}) * 50 + 10;
  AtlasLabelMap map;
  map.name = "synthetic";
  map.fallback_prefix = "s";
  map.labels.data = torch::zeros({24, 40, 40}, torch::kShort);
  map.labels.data.slice(1, 5, 15).slice(2, 5, 15).fill_(1);
  for (int64_t z = 0; z < 24; ++z) map.labels.data[z].slice(0, 20, 30).slice(1, z, z + 10).fill_(2);
  atlas.label_maps.push_back(map);
  return atlas;
}

TEST(UnseenEval, BaselinesAndTablesAreComputedFromTheSlices) {
  torch::manual_seed(0);
  models::IrisOptions o{2, 1, 4, 2, 2, 2, 1, false};
  models::IrisModel a(o), b(o);
  UnseenEvalOptions options;
  options.slice_size = 32;
  options.min_area = 4;
  options.queries_per_structure = 4;
  const auto atlas = synthetic_atlas();
  const auto results = evaluate_unseen_structures(a, b, atlas, {"synthetic"}, options);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.queries, 4);
    for (double d : {r.one_shot, r.ensemble, r.untrained, r.copy_reference}) {
      EXPECT_GE(d, 0.0);
      EXPECT_LE(d, 1.0);
    }
  }
  const auto& fixed = results[0].value == 1 ? results[0] : results[1];
  const auto& drifting = results[0].value == 1 ? results[1] : results[0];
  EXPECT_DOUBLE_EQ(fixed.copy_reference, 1.0) << "an unchanging structure is copied exactly";
  EXPECT_LT(drifting.copy_reference, 1.0);
  const auto json = unseen_results_json(results, options);
  EXPECT_EQ(json["structures"].size(), 2u);
  EXPECT_NEAR(json["mean"]["copy_reference"].get<double>(),
              (fixed.copy_reference + drifting.copy_reference) / 2, 1e-12);
  const std::string md = unseen_results_markdown(results, options);
  const std::string verdict = json["paired"][0]["verdict"].get<std::string>();
  EXPECT_NE(md.find("One-shot IRIS " + verdict + " the copied reference"), std::string::npos) << md;
}

// "beats" only where the paired interval lies above 0.
TEST(UnseenEval, PairedVerdictsFollowTheInterval) {
  const std::vector<double> base{0.40, 0.50, 0.30, 0.60, 0.45, 0.55, 0.35, 0.50};
  std::vector<double> clearly(base), mixed(base);
  for (std::size_t i = 0; i < base.size(); ++i) {
    clearly[i] += 0.10 + 0.01 * static_cast<double>(i % 3);
    mixed[i] += (i % 2 == 0 ? 0.05 : -0.045);
  }
  const PairedComparison up = compare_paired(clearly, base);
  EXPECT_GT(up.low, 0);
  EXPECT_EQ(up.verdict(), "beats");
  EXPECT_EQ(up.wins, 8);
  const PairedComparison straddle = compare_paired(mixed, base);
  EXPECT_LT(straddle.low, 0);
  EXPECT_GT(straddle.high, 0);
  EXPECT_GT(straddle.mean_difference, 0) << "a positive mean alone is not a win";
  EXPECT_EQ(straddle.verdict(), "shows no clear difference from");
  EXPECT_EQ(compare_paired(base, clearly).verdict(), "is below");
}

}  // namespace
}  // namespace iris
