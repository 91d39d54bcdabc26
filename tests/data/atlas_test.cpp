#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
