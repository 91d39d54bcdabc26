#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/episodes.h"
#include "data/inspect.h"
#include "data/nifti_dataset.h"
#include "data/synthetic_volume.h"
#include "io/nifti.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

SyntheticVolumeOptions small_options() {
  SyntheticVolumeOptions o;
  o.cases = 3;
  o.size = 24;
  o.classes = 3;
  o.seed = 5;
  return o;
}

bool has_problem(const std::vector<std::string>& problems, const std::string& file,
                 const std::string& what) {
  for (const auto& p : problems) {
    if (p.find(file) != std::string::npos && p.find(what) != std::string::npos &&
        p.find('\n') == std::string::npos) {
      return true;
    }
  }
  return false;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

TEST(SyntheticVolumes, DeterministicBySeedWithEveryClass) {
  const auto o = small_options();
  const auto a = make_synthetic_volume(o, 1);
  const auto b = make_synthetic_volume(o, 1);
  EXPECT_TRUE(torch::equal(a.image.data, b.image.data));
  EXPECT_TRUE(torch::equal(a.labels.data, b.labels.data));
  EXPECT_EQ(a.image.data.sizes(), (std::vector<int64_t>{24, 24, 24}));
  EXPECT_EQ(a.labels.data.scalar_type(), torch::kByte);
  EXPECT_EQ(std::get<0>(at::_unique(a.labels.data)).numel(), 4) << "background and 3 organs";
  // Other cases and other seeds differ in shape and intensity.
  const auto c = make_synthetic_volume(o, 2);
  EXPECT_FALSE(torch::equal(a.labels.data, c.labels.data));
  auto o2 = o;
  o2.seed = 6;
  EXPECT_FALSE(torch::equal(a.image.data, make_synthetic_volume(o2, 1).image.data));
  // Each organ has its own intensity level.
  std::set<int> means;
  for (int k = 1; k <= 3; ++k) {
    means.insert(int(a.image.data.masked_select(a.labels.data == k).mean().item<double>() * 100));
  }
  EXPECT_EQ(means.size(), 3u);
  o2.classes = 0;
  EXPECT_THROW(make_synthetic_volume(o2, 0), ConfigError);
}

TEST(NiftiDataset, SyntheticTreeRoundTripsThroughTheAdapterAndInspect) {
  test::TempDir dir;
  const auto o = small_options();
  EXPECT_EQ(write_synthetic_volumes(o, dir.path()), 3);
  const NiftiDataset ds = scan_nifti_dataset(dir.path());
  EXPECT_TRUE(ds.problems.empty()) << joined(ds.problems);
  ASSERT_EQ(ds.cases.size(), 3u);
  EXPECT_EQ(ds.cases[0].id, "case_000");
  EXPECT_EQ(ds.class_name(2), "organ_2");
  for (int64_t i = 0; i < 3; ++i) {
    const auto& c = ds.cases[i];
    EXPECT_TRUE(c.ok);
    EXPECT_EQ(c.shape, (std::array<int64_t, 3>{24, 24, 24}));
    EXPECT_NEAR(c.spacing[0], 1.5, 1e-6);
    const auto expected = make_synthetic_volume(o, i);
    const auto [image, labels] = load_nifti_case(c);
    EXPECT_TRUE(torch::equal(labels.data.to(torch::kByte), expected.labels.data));
    EXPECT_TRUE(torch::allclose(image.data, expected.image.data));
    for (int64_t k = 1; k <= 3; ++k) {
      EXPECT_EQ(c.class_voxels.at(k), (expected.labels.data == k).sum().item<int64_t>());
    }
  }
  const InspectReport report = inspect_path(dir.path());
  EXPECT_EQ(report.layout, "NIfTI imagesTr/labelsTr (MSD / nnU-Net)");
  EXPECT_EQ(report.classes.size(), 3u);
  EXPECT_EQ(report.classes[0].name, "organ_1");
  EXPECT_TRUE(report.problems.empty());
  const std::string text = report.to_text(10);
  EXPECT_NE(text.find("volumes: 3 (3 with a usable label map)"), std::string::npos) << text;
  EXPECT_NE(text.find("sizes: 24 x 24 x 24"), std::string::npos) << text;
}

TEST(NiftiDataset, NnUNetLabelsAndMsdNamesAreRead) {
  test::TempDir dir;
  write_synthetic_volumes(small_options(), dir.path());
  // nnU-Net v2 style: name -> value.
  write_file_atomic(dir / "dataset.json",
                    R"({"labels": {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}})");
  const NiftiDataset ds = scan_nifti_dataset(dir.path());
  EXPECT_EQ(ds.class_name(1), "liver");
  EXPECT_EQ(ds.class_name(3), "kidney");
  EXPECT_EQ(ds.label_names.count(0), 0u);
  // MSD names: no channel suffix, and ids that themselves end in four digits.
  fs::rename(dir / "imagesTr" / "case_000_0000.nii.gz", dir / "imagesTr" / "case_000.nii.gz");
  fs::rename(dir / "imagesTr" / "case_001_0000.nii.gz", dir / "imagesTr" / "liver_0001.nii.gz");
  fs::rename(dir / "labelsTr" / "case_001.nii.gz", dir / "labelsTr" / "liver_0001.nii.gz");
  const NiftiDataset msd = scan_nifti_dataset(dir.path());
  EXPECT_TRUE(msd.problems.empty()) << joined(msd.problems);
  ASSERT_EQ(msd.cases.size(), 3u);
  EXPECT_EQ(msd.cases[0].id, "case_000");
  EXPECT_EQ(msd.cases[2].id, "liver_0001");
  EXPECT_TRUE(msd.cases[2].ok);
}

TEST(NiftiDataset, EveryProblemOfATreeIsListedOnOneLineNamingTheFile) {
  test::TempDir dir;
  auto o = small_options();
  o.cases = 4;
  write_synthetic_volumes(o, dir.path());
  // case_000: label on a different shape; case_001: label missing; case_002: truncated image;
  // an orphan label with no image.
  Volume small = make_synthetic_volume(o, 0).labels;
  small.data = small.data.slice(0, 0, 20).contiguous();
  write_nifti(dir / "labelsTr" / "case_000.nii.gz", small);
  fs::remove(dir / "labelsTr" / "case_001.nii.gz");
  const fs::path truncated = dir / "imagesTr" / "case_002_0000.nii.gz";
  const auto full = fs::file_size(truncated);
  fs::resize_file(truncated, full / 2);
  fs::copy_file(dir / "labelsTr" / "case_003.nii.gz", dir / "labelsTr" / "orphan.nii.gz");

  const NiftiDataset ds = scan_nifti_dataset(dir.path());
  EXPECT_EQ(ds.problems.size(), 4u) << joined(ds.problems);
  EXPECT_TRUE(has_problem(ds.problems, "case_000.nii.gz", "differs from image shape"))
      << joined(ds.problems);
  EXPECT_TRUE(has_problem(ds.problems, "case_001_0000.nii.gz", "no label file"))
      << joined(ds.problems);
  EXPECT_TRUE(has_problem(ds.problems, "case_002_0000.nii.gz", "")) << joined(ds.problems);
  EXPECT_TRUE(has_problem(ds.problems, "orphan.nii.gz", "label without an image"))
      << joined(ds.problems);
  ASSERT_EQ(ds.cases.size(), 4u);
  EXPECT_TRUE(ds.cases[3].ok);
  EXPECT_FALSE(ds.cases[0].ok);
  try {
    load_nifti_case(ds.cases[1]);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("case_001_0000.nii.gz"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_nifti_case(ds.cases[0]), InputError);
  // A truncated .nii.gz read directly: one line naming the file.
  try {
    read_nifti(truncated);
    FAIL();
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("case_002_0000.nii.gz"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  // inspect lists them all, and the command line prints them.
  EXPECT_EQ(inspect_path(dir.path()).problems.size(), 4u);
  const auto r =
      test::run_command(test::iris_binary() + " data inspect '" + dir.path().string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("problems: 4"), std::string::npos) << r.output;
  EXPECT_THROW(scan_nifti_dataset(dir / "imagesTr"), InputError);
}

TEST(NiftiDataset, CommandLineSynthWritesAReadableTree) {
  test::TempDir dir;
  const auto out = dir / "synth";
  const auto r = test::run_command(test::iris_binary() + " data synth volumes --out '" +
                                   out.string() + "' --cases 2 --size 20 --classes 2 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const NiftiDataset ds = scan_nifti_dataset(out);
  EXPECT_TRUE(ds.problems.empty()) << joined(ds.problems);
  ASSERT_EQ(ds.cases.size(), 2u);
  EXPECT_EQ(ds.cases[1].shape, (std::array<int64_t, 3>{20, 20, 20}));
  EXPECT_EQ(ds.cases[1].class_voxels.size(), 2u);
  SyntheticVolumeOptions o;
  o.cases = 2, o.size = 20, o.classes = 2, o.seed = 3;
  EXPECT_TRUE(torch::equal(load_nifti_case(ds.cases[1]).second.data.to(torch::kByte),
                           make_synthetic_volume(o, 1).labels.data));
  const auto bad = test::run_command(test::iris_binary() + " data synth volumes --out '" +
                                     out.string() + "' --size 20x20");
  EXPECT_NE(bad.exit_code, 0) << bad.output;
}

TEST(VolumeEpisodes, QueryIsNeverItsOwnReferenceAndSharesTheClass) {
  auto o = small_options();
  o.cases = 4;
  o.size = 32;
  std::vector<Volume> images, labels;
  for (int64_t i = 0; i < o.cases; ++i) {
    auto c = make_synthetic_volume(o, i);
    images.push_back(c.image);
    labels.push_back(c.labels);
  }
  // Class 4 only in case 0: never an episode class.
  labels[0].data.slice(0, 0, 4).slice(1, 0, 4).slice(2, 0, 4).fill_(4);
  VolumeEpisodeSampler sampler(images, labels, 20);
  EXPECT_EQ(sampler.cases(), 4);
  EXPECT_EQ(sampler.episode_classes(), (std::vector<int64_t>{1, 2, 3}));
  PatchEpisodeOptions options;
  options.patch_size = {16, 20, 12};
  options.classes_per_episode = 3;
  std::mt19937_64 rng(7);
  int64_t empty_query_masks = 0, multi_class = 0;
  for (int n = 0; n < 40; ++n) {
    const PatchEpisode e = sampler.sample(rng, sampler.episode_classes(), options);
    EXPECT_NE(e.ref_case, e.query_case);
    const int64_t k = static_cast<int64_t>(e.class_values.size());
    ASSERT_GE(k, 1);
    multi_class += k > 1;
    EXPECT_EQ(e.ref_image.sizes(), (std::vector<int64_t>{1, 16, 20, 12}));
    EXPECT_EQ(e.query_masks.sizes(), (std::vector<int64_t>{k, 16, 20, 12}));
    EXPECT_GT(e.ref_masks[0].sum().item<double>(), 0) << "anchor class in the reference";
    EXPECT_GT(e.query_masks[0].sum().item<double>(), 0) << "anchor class in the query";
    for (int64_t c = 0; c < k; ++c) {
      EXPECT_GE(e.ref_masks[c].sum().item<double>(), 1);
      empty_query_masks += e.query_masks[c].sum().item<double>() == 0;
      // Masks are the label crop at the recorded origin.
      const auto crop = labels[e.query_case]
                            .data.slice(0, e.query_origin[0], e.query_origin[0] + 16)
                            .slice(1, e.query_origin[1], e.query_origin[1] + 20)
                            .slice(2, e.query_origin[2], e.query_origin[2] + 12);
      EXPECT_TRUE(torch::equal(e.query_masks[c], (crop == e.class_values[c]).to(torch::kFloat)));
    }
    EXPECT_LE(e.query_image.max().item<double>(), 1.0 + 1e-6);  // normalised (float rounding)
  }
  EXPECT_GT(multi_class, 0) << "several classes per episode";
  RecordProperty("absent_query_masks", std::to_string(empty_query_masks));
  // Same seed, same episode.
  std::mt19937_64 a(11), b(11);
  const auto ea = sampler.sample(a, {2}, options), eb = sampler.sample(b, {2}, options);
  EXPECT_EQ(ea.ref_case, eb.ref_case);
  EXPECT_EQ(ea.query_origin, eb.query_origin);
  EXPECT_THROW(sampler.sample(rng, {4}, options), InputError);
}

TEST(VolumeEpisodes, PatchesLargerThanTheVolumeArePadded) {
  auto o = small_options();
  std::vector<Volume> images, labels;
  for (int64_t i = 0; i < 2; ++i) {
    auto c = make_synthetic_volume(o, i);
    images.push_back(c.image);
    labels.push_back(c.labels);
  }
  VolumeEpisodeSampler sampler(images, labels, 1);
  PatchEpisodeOptions options;
  options.patch_size = {32, 32, 32};
  std::mt19937_64 rng(3);
  const auto e = sampler.sample(rng, {1}, options);
  EXPECT_EQ(e.query_image.sizes(), (std::vector<int64_t>{1, 32, 32, 32}));
  EXPECT_EQ(e.query_origin, (std::array<int64_t, 3>{0, 0, 0}));
  EXPECT_EQ(e.query_masks.slice(1, 24, 32).sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace iris
