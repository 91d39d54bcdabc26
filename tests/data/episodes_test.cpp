#include <gtest/gtest.h>

#include "core/error.h"
#include "data/episodes.h"

namespace iris {
namespace {

// 20 axial slices of 30 x 40 with three box-shaped structures spanning different slice ranges.
std::pair<Volume, Volume> synthetic_volume() {
  Volume image, labels;
  image.data = torch::rand({20, 30, 40}) * 100 + 1;
  labels.data = torch::zeros({20, 30, 40}, torch::kShort);
  labels.data.slice(0, 2, 12).slice(1, 5, 15).slice(2, 5, 20).fill_(1);
  labels.data.slice(0, 6, 18).slice(1, 16, 28).slice(2, 10, 30).fill_(2);
  labels.data.slice(0, 0, 20).slice(1, 2, 10).slice(2, 25, 38).fill_(3);
  labels.data.slice(0, 10, 11).slice(1, 0, 2).slice(2, 0, 2).fill_(4);  // one slice only, tiny
  return {image, labels};
}

std::vector<int64_t> range(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

TEST(SliceDataset, NonemptySlicesCountForegroundVoxels) {
  auto image = torch::zeros({5, 4, 4});
  image[1].fill_(1);
  image[3].slice(0, 0, 2).fill_(1);  // 8 voxels
  EXPECT_EQ(nonempty_slices(image, 8), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(nonempty_slices(image, 9), (std::vector<int64_t>{1}));
}

TEST(SliceDataset, ResizesToSquareAndIndexesClasses) {
  auto [image, labels] = synthetic_volume();
  SliceDataset data(image, labels, range(20), 32, 4);
  EXPECT_EQ(data.image(0).sizes(), (std::vector<int64_t>{1, 32, 32}));
  EXPECT_EQ(data.episode_classes(), (std::vector<int64_t>{1, 2, 3})) << "class 4 is on one slice only";
  EXPECT_EQ(data.slices_with(1).size(), 10u);
  EXPECT_LE(data.image(3).max().item<float>(), 1.0f);
  EXPECT_GE(data.image(3).min().item<float>(), 0.0f);
}

TEST(SliceDataset, EpisodesPairDifferentSlicesSharingTheClasses) {
  auto [image, labels] = synthetic_volume();
  SliceDataset data(image, labels, range(20), 32, 4);
  SliceEpisodeOptions options;
  options.absent_query_probability = 0.0;
  options.min_slice_gap = 3;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 50; ++i) {
    const Episode e = data.sample(rng, {1, 2, 3}, options);
    EXPECT_GE(std::abs(e.ref_slice - e.query_slice), 3);
    ASSERT_FALSE(e.class_values.empty());
    EXPECT_EQ(e.ref_masks.size(0), static_cast<int64_t>(e.class_values.size()));
    EXPECT_EQ(e.query_masks.sizes(), e.ref_masks.sizes());
    for (int64_t k = 0; k < e.ref_masks.size(0); ++k) {
      EXPECT_GE(e.ref_masks[k].sum().item<float>(), 4) << "every class is present on the reference";
    }
    EXPECT_GE(e.query_masks[0].sum().item<float>(), 4) << "the anchor class is present on the query";
  }
}

TEST(SliceDataset, SamplingIsDeterministicForASeed) {
  auto [image, labels] = synthetic_volume();
  SliceDataset data(image, labels, range(20), 32, 4);
  std::mt19937_64 a(11), b(11);
  for (int i = 0; i < 10; ++i) {
    const Episode x = data.sample(a, {1, 2, 3}, {});
    const Episode y = data.sample(b, {1, 2, 3}, {});
    EXPECT_EQ(x.ref_slice, y.ref_slice);
    EXPECT_EQ(x.query_slice, y.query_slice);
    EXPECT_EQ(x.class_values, y.class_values);
  }
  std::mt19937_64 rng(1);
  EXPECT_THROW(data.sample(rng, {4}, {}), InputError);
  EXPECT_THROW(data.sample(rng, {}, {}), InputError);
}

}  // namespace
}  // namespace iris
