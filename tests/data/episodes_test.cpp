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

// Composite classes: a union of the class with a class near it, or the class cut by one line that
// is the same on both slices; the bank-free value -1; nothing drawn when the probability is 0.
TEST(SliceDataset, CompositeClassesAreUnionsOrCutsConsistentOnBothSlices) {
  auto [image, labels] = synthetic_volume();
  SliceDataset data(image, labels, range(20), 32, 4);
  SliceEpisodeOptions options;
  options.absent_query_probability = 0.0;
  options.composite_probability = 1.0;
  std::mt19937_64 rng(3);
  int unions = 0, cuts = 0;
  for (int i = 0; i < 60; ++i) {
    const Episode e = data.sample(rng, {1, 2, 3}, options);
    for (int64_t k = 0; k < e.ref_masks.size(0); ++k) {
      const at::Tensor r = e.ref_masks[k], q = e.query_masks[k];
      if (e.class_values[k] != -1) {  // no class near it on the reference: the class as it is
        EXPECT_TRUE(at::equal(r, data.mask(e.ref_slice, e.class_values[k])));
        EXPECT_TRUE(at::equal(q, data.mask(e.query_slice, e.class_values[k])));
        continue;
      }
      EXPECT_GE(r.sum().item<float>(), 4) << "a composite is present on the reference";
      bool found = false;
      for (int64_t c : {1, 2, 3}) {
        const at::Tensor rc = data.mask(e.ref_slice, c), qc = data.mask(e.query_slice, c);
        for (int64_t o : {1, 2, 3}) {
          if (o == c || found) continue;
          if (at::equal(r, at::maximum(rc, data.mask(e.ref_slice, o)))) {
            EXPECT_TRUE(at::equal(q, at::maximum(qc, data.mask(e.query_slice, o))));
            ++unions;
            found = true;
          }
        }
        const bool cut = (r <= rc).all().item<bool>() && r.sum().item<float>() < rc.sum().item<float>();
        if (!found && cut) {
          EXPECT_TRUE((q <= qc).all().item<bool>());
          // One half-plane: where the class covers both slices, both keep the same pixels.
          EXPECT_EQ(((r - q).abs() * rc * qc).sum().item<float>(), 0) << "episode " << i;
          ++cuts;
          found = true;
        }
      }
      EXPECT_TRUE(found) << "episode " << i << " class " << k << " is neither a union nor a cut";
    }
  }
  EXPECT_GT(unions, 10);
  EXPECT_GT(cuts, 10);
  // Probability 0 draws nothing: the episodes of the default options.
  options.composite_probability = 0.0;
  SliceEpisodeOptions plain;
  plain.absent_query_probability = 0.0;
  std::mt19937_64 a(9), b(9);
  for (int i = 0; i < 10; ++i) {
    const Episode x = data.sample(a, {1, 2, 3}, options);
    const Episode y = data.sample(b, {1, 2, 3}, plain);
    EXPECT_EQ(x.class_values, y.class_values);
    EXPECT_EQ(x.query_slice, y.query_slice);
    EXPECT_TRUE(at::equal(x.ref_masks, y.ref_masks));
  }
}

// Random classes: brain-bounded regions of the reference slice, the same 3D ellipsoid on the
// query (often reaching it), different in every episode, with the bank-free value -1.
TEST(SliceDataset, RandomClassesAreEllipsoidsInsideTheBrainOfBothSlices) {
  auto [image, labels] = synthetic_volume();
  SliceDataset data(image, labels, range(20), 32, 4);
  SliceEpisodeOptions options;
  options.absent_query_probability = 0.0;
  options.random_class_probability = 1.0;
  std::mt19937_64 rng(4);
  int64_t random = 0, reaching = 0;
  std::vector<at::Tensor> seen;
  for (int i = 0; i < 40; ++i) {
    const Episode e = data.sample(rng, {1, 2, 3}, options);
    for (int64_t k = 0; k < e.ref_masks.size(0); ++k) {
      if (e.class_values[k] != -1) continue;
      ++random;
      const at::Tensor r = e.ref_masks[k], q = e.query_masks[k];
      EXPECT_GE(r.sum().item<float>(), 4);
      EXPECT_EQ((r * (data.image(e.ref_slice)[0] <= 0.02)).sum().item<float>(), 0);
      EXPECT_EQ((q * (data.image(e.query_slice)[0] <= 0.02)).sum().item<float>(), 0);
      reaching += q.sum().item<float>() > 0;
      for (const auto& other : seen) EXPECT_FALSE(at::equal(other, r));
      seen.push_back(r);
    }
  }
  EXPECT_GT(random, 60);
  EXPECT_GT(reaching, random / 2) << "most ellipsoids reach the query slice";
}

}  // namespace
}  // namespace iris
