// Users' datasets: 2D image folders (Kvasir-SEG layout, JPEG masks), MSD trees with broken cases
// among good ones, and cross-case episodes over several datasets.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "data/dataset_episodes.h"
#include "data/image_folder_dataset.h"
#include "data/inspect.h"
#include "io/image_io.h"
#if IRIS_HAVE_NIFTI
#include "data/synthetic_volume.h"
#include "io/nifti.h"
#endif
#include "dataset_util.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

TEST(ImageFolder, KvasirLayoutWithJpegMasksIsOneBinaryClassPerImage) {
  test::TempDir dir;
  test::write_kvasir_like(dir.path(), 5);
  ASSERT_TRUE(is_image_folder_dataset_dir(dir.path()));
  // Read as stored, a JPEG mask holds many values (compression noise).
  const at::Tensor raw = read_image_raw(dir / "masks/synth0000.jpg");
  EXPECT_GT(std::get<0>(at::_unique(raw.flatten())).numel(), 2);
  const ImageFolderDataset ds = scan_image_folder(dir.path());
  EXPECT_TRUE(ds.problems.empty()) << ds.problems.front();
  ASSERT_EQ(ds.cases.size(), 5u);
  for (const auto& c : ds.cases) {
    EXPECT_TRUE(c.ok);
    EXPECT_EQ(c.channels, 3);
    ASSERT_EQ(c.class_pixels.size(), 1u) << c.id;
    EXPECT_EQ(c.class_pixels.begin()->first, 1);
  }
  const InspectReport report = inspect_path(dir.path());
  EXPECT_EQ(report.layout, "2D image folder (images/ + masks/)");
  ASSERT_EQ(report.classes.size(), 1u);
  EXPECT_EQ(report.classes[0].name, "foreground");
}

TEST(ImageFolder, MasksMatchedWithASuffixAndProblemsNamed) {
  test::TempDir dir;
  fs::create_directories(dir / "images");
  fs::create_directories(dir / "masks");
  const at::Tensor image = torch::full({20, 30, 3}, 100, torch::kByte);
  at::Tensor mask = torch::zeros({20, 30}, torch::kByte);
  mask.narrow(0, 5, 5).fill_(255);
  for (const char* id : {"ISIC_001", "ISIC_002", "ISIC_003"}) {
    write_image(dir / "images" / (std::string(id) + ".jpg"), image);
  }
  write_image(dir / "masks/ISIC_001_segmentation.png", mask);
  write_image(dir / "masks/ISIC_002_segmentation.png", torch::zeros({10, 10}, torch::kByte));
  write_image(dir / "masks/ISIC_009_segmentation.png", mask);
  const ImageFolderDataset ds = scan_image_folder(dir.path());
  EXPECT_EQ(ds.mask_suffix, "_segmentation");
  ASSERT_EQ(ds.cases.size(), 3u);
  EXPECT_TRUE(ds.cases[0].ok);
  EXPECT_EQ(ds.cases[0].class_pixels.at(1), 5 * 30);
  EXPECT_FALSE(ds.cases[1].ok) << "size mismatch";
  EXPECT_FALSE(ds.cases[2].ok) << "no mask";
  ASSERT_EQ(ds.problems.size(), 3u);
  std::string all;
  for (const auto& p : ds.problems) all += p + "\n";
  EXPECT_NE(all.find("ISIC_002_segmentation.png"), std::string::npos) << all;
  EXPECT_NE(all.find("ISIC_003.jpg"), std::string::npos) << all;
  EXPECT_NE(all.find("ISIC_009_segmentation.png: mask without an image"), std::string::npos) << all;
}

TEST(DatasetEpisodes, ImageFolderEpisodesPairDifferentImagesOfTheSameDataset) {
  test::TempDir dir;
  test::write_kvasir_like(dir / "kvasir", 8);
  test::write_kvasir_like(dir / "other", 6, 48, 48);
  DatasetLoadOptions options;
  options.spatial_dims = 2;
  options.in_channels = 3;
  options.image_size = 32;
  std::vector<DatasetSpec> specs(2);
  specs[0].path = (dir / "kvasir").string();
  specs[1].path = (dir / "other").string();
  specs[1].weight = 3;
  const auto datasets = load_datasets(specs, options);
  ASSERT_EQ(datasets.size(), 2u);
  EXPECT_EQ(datasets[0].name, "kvasir");
  EXPECT_EQ(datasets[0].modality, Modality::kOther);
  EXPECT_EQ(datasets[0].validation.size(), 2u);
  EXPECT_EQ(datasets[0].train.size(), 6u);
  EXPECT_EQ(datasets[0].train[0].image.sizes(), (std::vector<int64_t>{3, 1, 32, 32}));
  EXPECT_EQ(datasets[0].class_name(1), "foreground");
  std::set<std::string> ids;
  for (const auto& c : datasets[0].train) ids.insert(c.id);
  for (const auto& c : datasets[0].validation) EXPECT_FALSE(ids.count(c.id)) << c.id;

  const DatasetEpisodeSampler sampler(std::make_shared<const std::vector<PreparedDataset>>(datasets),
                                      DatasetEpisodeSampler::Split::kTrain, 20);
  DatasetEpisodeOptions o;
  o.patch_size = {1, 32, 32};
  o.augment = true;
  std::mt19937_64 rng(7);
  int64_t from_other = 0;
  for (int i = 0; i < 40; ++i) {
    const DatasetEpisode e = sampler.sample(rng, o);
    EXPECT_NE(e.episode.ref_case, e.episode.query_case) << "the query is never the reference";
    EXPECT_EQ(e.episode.ref_image.sizes(), (std::vector<int64_t>{3, 1, 32, 32}));
    EXPECT_GT(e.episode.ref_masks[0].sum().item<double>(), 0) << "the reference shows the class";
    from_other += e.dataset == 1;
  }
  EXPECT_GT(from_other, 20) << "weights 1:3 favour the second dataset";
  // A function of the rng alone.
  std::mt19937_64 a(3), b(3);
  const auto ea = sampler.sample(a, o), eb = sampler.sample(b, o);
  EXPECT_TRUE(at::equal(ea.episode.query_image, eb.episode.query_image));
  EXPECT_TRUE(at::equal(ea.episode.ref_masks, eb.episode.ref_masks));
}

#if IRIS_HAVE_NIFTI

TEST(DatasetEpisodes, BrokenCasesAreSkippedWithAWarningNamingEachAndTooFewUsableIsAnError) {
  test::TempDir dir;
  SyntheticVolumeOptions synth;
  synth.cases = 7;
  synth.size = 24;
  write_synthetic_volumes(synth, dir / "msd");
  const fs::path images = dir / "msd/imagesTr", labels = dir / "msd/labelsTr";
  std::vector<fs::path> label_files;
  for (const auto& e : fs::directory_iterator(labels)) label_files.push_back(e.path());
  std::sort(label_files.begin(), label_files.end());
  ASSERT_EQ(label_files.size(), 7u);
  // 1: truncated label file.
  {
    const std::string bytes = read_file(label_files[0]);
    write_file_atomic(label_files[0], bytes.substr(0, bytes.size() / 3));
  }
  // 2: label map on another grid.
  {
    Volume v = read_nifti(label_files[1]);
    v.data = v.data.narrow(0, 0, 20).contiguous();
    write_nifti(label_files[1], v);
  }
  // 3: a label value dataset.json does not name.
  {
    Volume v = read_nifti(label_files[2]);
    v.data.view({-1}).narrow(0, 0, 30).fill_(9);
    write_nifti(label_files[2], v);
  }
  // 4: label affine differs.
  {
    Volume v = read_nifti(label_files[3]);
    v.affine(0, 3) += 5;
    write_nifti(label_files[3], v);
  }
  DatasetLoadOptions options;
  options.spatial_dims = 3;
  DatasetSpec spec;
  spec.path = (dir / "msd").string();
  // 3 usable cases left: too few.
  try {
    load_datasets({spec}, options);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("dataset 'msd' has 3 usable case(s)"), std::string::npos) << what;
    for (int i = 0; i < 4; ++i) {
      EXPECT_NE(what.find(label_files[i].filename().string()), std::string::npos)
          << "names " << label_files[i] << ": " << what;
    }
  }
  // Three more good cases: training goes on with the 6 usable ones.
  synth.cases = 3;
  synth.seed = 5;
  write_synthetic_volumes(synth, dir / "more");
  for (const auto& e : fs::directory_iterator(dir / "more/imagesTr"))
    fs::copy_file(e.path(), images / ("more_" + e.path().filename().string()));
  for (const auto& e : fs::directory_iterator(dir / "more/labelsTr"))
    fs::copy_file(e.path(), labels / ("more_" + e.path().filename().string()));
  const auto datasets = load_datasets({spec}, options);
  ASSERT_EQ(datasets.size(), 1u);
  EXPECT_EQ(datasets[0].train.size() + datasets[0].validation.size(), 6u);
  EXPECT_EQ(datasets[0].warnings.size(), 4u);
  for (const auto& w : datasets[0].warnings) std::cout << "[warning] " << w << "\n";
  // Geometry through the preprocessing path: the synthetic cases are 1.5 mm; resampled to 3 mm.
  options.preprocess.spacing = {3, 3, 3};
  options.preprocess.crop_foreground = false;
  const auto coarse = load_datasets({spec}, options);
  EXPECT_EQ(coarse[0].train[0].image.size(1), 12) << "24 voxels of 1.5 mm -> 12 of 3 mm";
}

TEST(DatasetEpisodes, PatchEpisodesComeFromDifferentCasesAndHeldOutClassesNeverAppear) {
  test::TempDir dir;
  SyntheticVolumeOptions synth;
  synth.cases = 6;
  synth.size = 24;
  synth.classes = 3;
  write_synthetic_volumes(synth, dir / "msd");
  DatasetLoadOptions options;
  options.spatial_dims = 3;
  DatasetSpec spec;
  spec.path = (dir / "msd").string();
  spec.exclude_classes = {2};
  const auto datasets = load_datasets({spec}, options);
  EXPECT_EQ(datasets[0].classes, (std::vector<int64_t>{1, 3}));
  const DatasetEpisodeSampler sampler(std::make_shared<const std::vector<PreparedDataset>>(datasets),
                                      DatasetEpisodeSampler::Split::kTrain, 5);
  DatasetEpisodeOptions o;
  o.patch_size = {8, 16, 16};
  o.classes_per_episode = 3;
  o.augment = true;
  std::mt19937_64 rng(1);
  for (int i = 0; i < 20; ++i) {
    const DatasetEpisode e = sampler.sample(rng, o);
    EXPECT_NE(e.episode.ref_case, e.episode.query_case);
    EXPECT_EQ(
        e.episode.query_masks.sizes(),
        (std::vector<int64_t>{static_cast<int64_t>(e.episode.class_values.size()), 8, 16, 16}));
    for (int64_t v : e.episode.class_values) EXPECT_NE(v, 2) << "held-out class trained";
  }
  spec.classes = {2};
  EXPECT_THROW(load_datasets({spec}, options), ConfigError) << "2 both trained and held out";
}

#endif

}  // namespace
}  // namespace iris
