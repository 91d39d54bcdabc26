#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/atlas.h"
#include "data/inspect.h"
#include "data/label_table.h"
#include "test_util.h"

namespace iris {
namespace {

TEST(LabelTable, ReadsTwoAndThreeColumnFilesWithCrlf) {
  test::TempDir dir;
  write_file_atomic(dir / "a.txt", "1 Precentral_L 2001\r\n2 Precentral_R 2002\r\n\r\n");
  write_file_atomic(dir / "b.txt", "0\tUnclassified\n7\tFornix\n");
  const auto a = read_label_table(dir / "a.txt");
  EXPECT_EQ(a.names.size(), 2u);
  EXPECT_EQ(a.names.at(2), "Precentral_R");
  const auto b = read_label_table(dir / "b.txt");
  EXPECT_EQ(b.names.size(), 1u) << "label 0 is background";
  EXPECT_EQ(b.name_of(7, "x"), "Fornix");
  EXPECT_EQ(b.name_of(9, "JHU_"), "JHU_9");
}

TEST(LabelTable, BadLineNamesFileAndLine) {
  test::TempDir dir;
  write_file_atomic(dir / "bad.txt", "1 ok\nnot-a-number name\n");
  try {
    read_label_table(dir / "bad.txt");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt:2: expected '<label value> <name>'"), std::string::npos)
        << e.what();
  }
}

class MricronAtlasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_mricron_atlas_dir(kMricronTemplates)) {
      GTEST_SKIP() << "mricron-data atlases not installed (apt-get install mricron-data)";
    }
  }
};

TEST_F(MricronAtlasTest, LoadsEveryLabelMapOnTheCh2betGrid) {
  const MricronAtlas atlas = load_mricron_atlas();
  EXPECT_EQ(atlas.image.data.sizes(), (std::vector<int64_t>{181, 217, 181}));
  ASSERT_EQ(atlas.label_maps.size(), 4u);
  const std::pair<const char*, int64_t> expected[] = {
      {"aal", 116}, {"brodmann", 41}, {"HarvardOxford-cort", 48}, {"JHU-WhiteMatter", 48}};
  for (const auto& [name, classes] : expected) {
    const auto& map = atlas.label_map(name);
    EXPECT_EQ(map.labels.data.sizes(), atlas.image.data.sizes()) << name;
    const auto values = std::get<0>(at::_unique(map.labels.data));
    EXPECT_EQ(values.numel() - 1, classes) << name << " (minus background)";
  }
  EXPECT_FALSE(atlas.label_map("aal").resampled);
  EXPECT_TRUE(atlas.label_map("HarvardOxford-cort").resampled);
  EXPECT_TRUE(atlas.label_map("JHU-WhiteMatter").resampled);
  EXPECT_EQ(atlas.label_map("aal").class_name(1), "Precentral_L");
  EXPECT_EQ(atlas.label_map("JHU-WhiteMatter").class_name(1), "Middle_cerebellar_peduncle");
  EXPECT_EQ(atlas.label_map("brodmann").class_name(17), "BA17");
  EXPECT_THROW(atlas.label_map("nope"), InputError);
  EXPECT_THROW(load_mricron_atlas(kMricronTemplates, {"aal", "typo"}), InputError);
}

TEST(BrainMask, ClosesNarrowGapsFillsHolesAndMeasuresInMillimetres) {
  // A solid ball of radius 8 voxels with a hollow core and a 1-voxel slit cut through it.
  Volume v;
  v.affine = Affine::diagonal(1, 1, 1);
  const auto axis = torch::arange(32, torch::kFloat) - 15.5;
  const auto g = torch::meshgrid({axis, axis, axis}, "ij");
  const auto r = (g[0].square() + g[1].square() + g[2].square()).sqrt();
  v.data = ((r <= 8) & (r > 3)).to(torch::kByte) * 50;
  v.data.select(2, 16).zero_();
  BrainMaskOptions plain;
  plain.closing_radius_mm = 0;
  const auto raw = brain_mask(v, plain);
  EXPECT_EQ(raw.sum().item<int64_t>(), (v.data > 0).sum().item<int64_t>())
      << "slit keeps the core open";
  // The 5 mm closing bridges the slit (all but its rim, where a ball can touch it from outside),
  // then the core is filled; nothing is added outside the ball.
  const auto closed = brain_mask(v);
  EXPECT_TRUE(closed.masked_select(r <= 6).all().item<bool>());
  EXPECT_FALSE(closed.masked_select(r > 8.5).any().item<bool>());
  // The margin is Euclidean in mm: spacing i 3, j 1, k 1.5 mm (data is [k][j][i]).
  Volume dot;
  dot.affine = Affine::diagonal(3, 1, 1.5);
  dot.data = torch::zeros({9, 9, 9}, torch::kFloat);
  dot.data[4][4][4] = 1;
  BrainMaskOptions margin;
  margin.closing_radius_mm = 0;
  margin.margin_mm = 3;
  const auto grown = brain_mask(dot, margin);
  EXPECT_TRUE(grown[2][4][4].item<bool>());   // k - 2: 3 mm
  EXPECT_FALSE(grown[1][4][4].item<bool>());  // k - 3: 4.5 mm
  EXPECT_TRUE(grown[4][1][4].item<bool>());   // j - 3: 3 mm
  EXPECT_FALSE(grown[4][0][4].item<bool>());  // j - 4: 4 mm
  EXPECT_TRUE(grown[4][4][3].item<bool>());   // i - 1: 3 mm
  EXPECT_FALSE(grown[3][4][3].item<bool>());  // i - 1, k - 1: 3.35 mm
  margin.margin_mm = -1;
  EXPECT_THROW(brain_mask(dot, margin), ConfigError);
}

// Fraction of labelled voxels inside `mask`.
double fraction_inside(const torch::Tensor& labels, const torch::Tensor& mask) {
  const auto labelled = labels > 0;
  return (labelled & mask).sum().item<double>() / labelled.sum().item<double>();
}

TEST_F(MricronAtlasTest, LabelMapsLandOnTheBrainMask) {
  const MricronAtlas atlas = load_mricron_atlas();
  const auto tissue = atlas.image.data > 0;
  const auto mask = brain_mask(atlas.image);
  BrainMaskOptions intracranial;
  intracranial.margin_mm = 4;
  const auto with_csf = brain_mask(atlas.image, intracranial);
  RecordProperty("brain_voxels_tissue", std::to_string(tissue.sum().item<int64_t>()));
  RecordProperty("brain_voxels_mask", std::to_string(mask.sum().item<int64_t>()));
  RecordProperty("brain_voxels_mask_4mm", std::to_string(with_csf.sum().item<int64_t>()));
  // Fractions of labelled voxels inside the mask, measured: on ch2bet > 0 / filled mask (threshold
  // 0, 5 mm closing) / with a 4 mm outer-CSF margin: aal 0.905 / 0.933 / 0.999, brodmann 0.939 /
  // 0.961 / 1.000, HarvardOxford 0.790 / 0.821 / 0.956, JHU 1.000 / 1.000 / 1.000. Closing and
  // filling barely move HarvardOxford: its thr0 maxprob map is an MNI152 population map that
  // reaches 1-5 mm past Colin27's pial surface into the subarachnoid CSF, dark in the unstripped
  // ch2. The HarvardOxford fraction with the margin is 0.891 at 2 mm, 0.932 at 3, 0.956 at 4 and
  // 0.978 at 5: 4 mm is the smallest whole-mm margin past 95%, one value for all four maps.
  const std::tuple<const char*, double, double> expected[] = {{"aal", 0.93, 0.99},
                                                              {"brodmann", 0.96, 0.99},
                                                              {"HarvardOxford-cort", 0.82, 0.95},
                                                              {"JHU-WhiteMatter", 0.99, 0.99}};
  for (const auto& [name, at_least, at_least_with_csf] : expected) {
    const auto& labels = atlas.label_map(name).labels.data;
    const double raw = fraction_inside(labels, tissue);
    const double filled = fraction_inside(labels, mask);
    const double csf = fraction_inside(labels, with_csf);
    RecordProperty(std::string(name) + "_tissue", std::to_string(raw));
    RecordProperty(std::string(name) + "_mask", std::to_string(filled));
    RecordProperty(std::string(name) + "_mask_4mm", std::to_string(csf));
    std::printf("%-20s on ch2bet>0 %.4f  on brain mask %.4f  with 4 mm CSF margin %.4f\n", name,
                raw, filled, csf);
    EXPECT_GE(filled, raw) << name;
    EXPECT_GT(filled, at_least) << name;
    EXPECT_GT(csf, at_least_with_csf) << name;
  }
}

TEST_F(MricronAtlasTest, InspectListsClassesAndProblems) {
  const InspectReport report = inspect_path(kMricronTemplates);
  EXPECT_EQ(report.layout, "mricron atlases");
  int64_t aal_classes = 0;
  for (const auto& c : report.classes) {
    if (c.group == "aal") {
      ++aal_classes;
      EXPECT_GT(c.count, 0);
    }
  }
  EXPECT_EQ(aal_classes, 116);
  const std::string text = report.to_text(5);
  EXPECT_NE(text.find("Precentral_L"), std::string::npos);
  EXPECT_NE(text.find("more (use --all)"), std::string::npos);
  EXPECT_EQ(report.to_json()["classes"].size(), report.classes.size());
}

TEST(Inspect, UnknownLayoutsAndMissingPathsAreBadInput) {
  test::TempDir dir;
  write_file_atomic(dir / "notes.txt", "hello");
  EXPECT_THROW(inspect_path(dir / "missing"), InputError);
  try {
    inspect_path(dir / "notes.txt");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layout not recognised"), std::string::npos);
  }
  const auto r = test::run_command(test::iris_binary() + " data inspect '" + (dir / "notes.txt").string() + "'");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("notes.txt: layout not recognised"), std::string::npos) << r.output;
}

TEST_F(MricronAtlasTest, CommandLineInspectPrintsTheAtlas) {
  const auto r = test::run_command(test::iris_binary() + " data inspect " + kMricronTemplates.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layout: mricron atlases"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("HarvardOxford-cort: 48 classes (resampled"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace iris
