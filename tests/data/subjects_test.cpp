// Subjects generated from the atlas, the real atlas in a new pose, and cross-subject episodes.
#include <gtest/gtest.h>

#include <set>

#include "data/atlas.h"
#include "data/subject_episodes.h"
#include "data/synthetic_subjects.h"

namespace iris {
namespace {

const MricronAtlas& atlas() {
  static const MricronAtlas a = load_mricron_atlas(kMricronTemplates, {"aal"});
  return a;
}

TEST(Subjects, ASubjectIsAFunctionOfItsSeedAndSubjectsDiffer) {
  if (!is_mricron_atlas_dir(kMricronTemplates)) GTEST_SKIP() << "mricron-data not installed";
  SubjectOptions o;
  o.spacing_mm = 4;
  const Subject a = make_subject(atlas(), o, 1), again = make_subject(atlas(), o, 1);
  const Subject b = make_subject(atlas(), o, 2);
  EXPECT_TRUE(at::equal(a.image.data, again.image.data));
  EXPECT_TRUE(at::equal(a.labels.at("aal").data, again.labels.at("aal").data));
  EXPECT_FALSE(at::equal(a.labels.at("aal").data, b.labels.at("aal").data));
  // On a RAS grid of the atlas's extent at 4 mm, intensities in [0, 1], 0 outside the brain.
  EXPECT_EQ(orientation_codes(a.image.affine), "RAS");
  for (double s : a.image.affine.spacing()) EXPECT_NEAR(s, 4.0, 1e-4);
  EXPECT_GE(a.image.data.min().item<double>(), 0.0);
  EXPECT_LE(a.image.data.max().item<double>(), 1.0);
  EXPECT_TRUE((a.image.data.masked_select(a.atlas_intensity <= 1e-3) == 0).all().item<bool>());
  // Labels are the atlas's values, moved: the same set of values, about the same volumes.
  const at::Tensor atlas_values = std::get<0>(at::_unique(atlas().label_map("aal").labels.data));
  const at::Tensor values = std::get<0>(at::_unique(a.labels.at("aal").data));
  std::set<int64_t> known;
  for (int64_t i = 0; i < atlas_values.numel(); ++i) known.insert(atlas_values[i].item<int64_t>());
  for (int64_t i = 0; i < values.numel(); ++i) EXPECT_TRUE(known.count(values[i].item<int64_t>()));
  const double brain_a = (a.labels.at("aal").data > 0).sum().item<double>() * 64;  // mm^3
  const double brain_atlas = (atlas().label_map("aal").labels.data > 0).sum().item<double>();
  EXPECT_NEAR(brain_a / brain_atlas, 1.0, 0.35) << "zoom within 8%, cubed, plus resampling";
}

TEST(Subjects, TheRealAtlasInANewPoseKeepsItsIntensitiesAndMovesItsLabels) {
  if (!is_mricron_atlas_dir(kMricronTemplates)) GTEST_SKIP() << "mricron-data not installed";
  SubjectOptions o;
  o.spacing_mm = 4;
  const Subject posed = pose_atlas(atlas(), o, 7);
  o.rotation_degrees = o.tilt_degrees = o.shift_mm = 0;
  const Subject still = pose_atlas(atlas(), o, 7);
  // No pose: the atlas resampled (its own intensities, its own labels at the same places).
  EXPECT_TRUE(at::equal(still.image.data, still.atlas_intensity));
  const at::Tensor a = still.labels.at("aal").data > 0, b = posed.labels.at("aal").data > 0;
  const double overlap = (a & b).sum().item<double>();
  const double dice = 2 * overlap / (a.sum().item<double>() + b.sum().item<double>());
  EXPECT_LT(dice, 0.97) << "the pose moved the brain";
  EXPECT_GT(dice, 0.6);
}

TEST(Subjects, CrossSubjectEpisodesPairDifferentSubjectsAtOneLevel) {
  if (!is_mricron_atlas_dir(kMricronTemplates)) GTEST_SKIP() << "mricron-data not installed";
  SubjectOptions o;
  o.spacing_mm = 4;
  std::vector<SubjectSlices> slices;
  for (uint64_t s = 0; s < 3; ++s) {
    slices.push_back(slice_subject(make_subject(atlas(), o, s), "aal", 32, 10));
  }
  const CrossSubjectSampler sampler(std::move(slices));
  const auto classes = sampler.episode_classes();
  ASSERT_GT(classes.size(), 20u);
  CrossSubjectOptions options;
  options.min_area = 10;
  options.level_gap = 2;
  options.random_class_probability = 0.5;
  options.absent_query_probability = 0;
  std::mt19937_64 rng(3);
  int64_t random_classes = 0, reaching_query = 0;
  for (int i = 0; i < 30; ++i) {
    const Episode e = sampler.sample(rng, classes, options);
    EXPECT_NE(e.ref_slice / 1000, e.query_slice / 1000) << "different subjects";
    EXPECT_LE(std::abs(e.ref_slice % 1000 - e.query_slice % 1000), 2);
    EXPECT_EQ(e.ref_image.sizes(), (std::vector<int64_t>{1, 32, 32}));
    for (std::size_t k = 0; k < e.class_values.size(); ++k) {
      EXPECT_GE(e.ref_masks[k].sum().item<double>(), 10.0);
      if (e.class_values[k] == -1) {
        ++random_classes;
        reaching_query += e.query_masks[k].sum().item<double>() > 0;
      }
    }
    if (e.class_values[0] != -1) {
      EXPECT_GT(e.query_masks[0].sum().item<double>(), 0) << "the anchor is in the query";
    }
  }
  EXPECT_GT(random_classes, 10);
  // A random class lies in the atlas's space, so it shows in the other subject too.
  EXPECT_GT(reaching_query, random_classes / 2);
}

}  // namespace
}  // namespace iris
