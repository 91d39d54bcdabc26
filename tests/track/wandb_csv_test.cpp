#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"
#include "track/wandb_csv.h"

namespace iris::track {
namespace {

const std::string kHeader =
    "\"Name\",\"eval/Dice\",\"eval/MAE\",\"eval/mIoU\",\"module.model.prompt_type\","
    "\"module.model.trainable_modules\",\"data_module.data.name\",\"trainer.max_epochs\"\n";
const std::string kTrained =
    "\"cholecseg8k_mask_mem+md+pe+ie__148297\",\"0.8606084263432308\",\"1.2770271242240798\",\"0."
    "8057491721585212\","
    "\"mask\",\"[\"\"memory_encoder\"\",\"\"memory_attention\"\",\"\"mask_decoder\"\",\"\"prompt_"
    "encoder\"\","
    "\"\"image_encoder\"\"]\",\"cholecseg8k\",\"30\"\n";
const std::string kBaseline =
    "\"cholecseg8k_mask_mem__148297\",\"0.8515\",\"1.7016\",\"0.7932\",\"mask\","
    "\"[\"\"memory_encoder\"\",\"\"memory_attention\"\"]\",\"cholecseg8k\",\"0\"\n";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST(WandbCsv, ParsesTheStudyExportRow) {
  const RunTable t = parse_wandb_csv(kHeader + kTrained + kBaseline, "export.csv");
  ASSERT_EQ(t.runs.size(), 2u);
  const RunRecord& r = t.runs[0];
  EXPECT_EQ(r.name, "cholecseg8k_mask_mem+md+pe+ie__148297");
  EXPECT_EQ(r.dataset, "cholecseg8k");
  EXPECT_EQ(r.prompt_type, "mask");
  EXPECT_EQ(r.recipe, "mem+md+pe+ie");
  EXPECT_EQ(r.trainable_modules.size(), 5u);
  EXPECT_TRUE(r.has_memory());
  EXPECT_TRUE(r.has_image_encoder());
  EXPECT_EQ(r.max_epochs, 30);
  EXPECT_FALSE(r.is_baseline);
  EXPECT_DOUBLE_EQ(*r.metric(kDice), 0.8606084263432308);
  EXPECT_DOUBLE_EQ(*r.metric(kMae), 1.2770271242240798);
  EXPECT_DOUBLE_EQ(*r.metric(kMiou), 0.8057491721585212);
  EXPECT_EQ(r.line, 2u);
  EXPECT_TRUE(t.runs[1].is_baseline);
  EXPECT_EQ(t.runs[1].recipe, "mem");
  EXPECT_FALSE(t.runs[1].has_image_encoder());
}

TEST(WandbCsv, ColumnsAreFoundByNameInAnyOrderAndCanBeOverridden) {
  const std::string text =
      "dataset,max_epochs,run,Dice,score_mae,mIoU,prompt_type,trainable_modules,unused\n"
      "kvasir,30,kvasir_box_md__1,0.5,2,0.4,box,\"['mask_decoder']\",x\n";
  EXPECT_NE(error_of([&] {
              parse_wandb_csv(text, "other.csv");
            }).find("missing required column 'eval/MAE'"),
            std::string::npos);
  const RunTable t = parse_wandb_csv(text, "other.csv", parse_column_overrides({"mae=score_mae"}));
  ASSERT_EQ(t.runs.size(), 1u);
  EXPECT_EQ(t.runs[0].name, "kvasir_box_md__1");
  EXPECT_EQ(t.runs[0].recipe, "md");
  EXPECT_EQ(t.runs[0].trainable_modules, (std::vector<std::string>{"mask_decoder"}));
  EXPECT_DOUBLE_EQ(*t.runs[0].metric(kMae), 2.0);
  EXPECT_THROW(parse_column_overrides({"volume=x"}), UsageError);
  EXPECT_THROW(parse_column_overrides({"dice"}), UsageError);
  EXPECT_NE(error_of([&] {
              parse_wandb_csv(text, "other.csv", parse_column_overrides({"mae=nope"}));
            }).find("no column 'nope' (from --column mae=nope)"),
            std::string::npos);
}

TEST(WandbCsv, MissingRequiredColumnNamesFileAndColumn) {
  const std::string text =
      "\"Name\",\"eval/Dice\",\"eval/MAE\",\"eval/mIoU\",\"module.model.prompt_type\","
      "\"module.model.trainable_modules\",\"data_module.data.name\"\n";
  const std::string msg = error_of([&] { parse_wandb_csv(text, "export.csv"); });
  EXPECT_NE(msg.find("export.csv: missing required column 'trainer.max_epochs'"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("--column max_epochs=NAME"), std::string::npos) << msg;
}

TEST(WandbCsv, NonNumericMetricNamesLineRunAndValue) {
  std::string bad = kTrained;
  bad.replace(bad.find("0.8606084263432308"), 18, "n/a-crash");
  const std::string msg =
      error_of([&] { parse_wandb_csv(kHeader + kBaseline + bad, "export.csv"); });
  EXPECT_NE(
      msg.find(
          "export.csv: line 3, run 'cholecseg8k_mask_mem+md+pe+ie__148297': column 'eval/Dice' has "
          "'n/a-crash', expected a number"),
      std::string::npos)
      << msg;
}

TEST(WandbCsv, EmptyMetricIsMissingNotZero) {
  std::string empty = kTrained;
  empty.replace(empty.find("0.8606084263432308"), 18, "");
  const RunTable t = parse_wandb_csv(kHeader + empty, "export.csv");
  EXPECT_FALSE(t.runs[0].metric(kDice).has_value());
}

TEST(WandbCsv, BadEpochsAndModulesAreReported) {
  std::string bad = kBaseline;
  bad.replace(bad.rfind("\"0\""), 3, "\"zero\"");
  EXPECT_NE(
      error_of([&] {
        parse_wandb_csv(kHeader + bad, "export.csv");
      }).find("line 2, run 'cholecseg8k_mask_mem__148297': column 'trainer.max_epochs' has 'zero'"),
      std::string::npos);
  // A module list that opens '[' but never closes it.
  std::string broken = kBaseline;
  broken.replace(broken.find("\"\"memory_attention\"\"]"), 21, "\"\"memory_attention\"\"");
  EXPECT_NE(
      error_of([&] { parse_wandb_csv(kHeader + broken, "export.csv"); }).find("is not a list"),
      std::string::npos);
}

TEST(WandbCsv, ExportImportRoundTrip) {
  RunTable t = parse_wandb_csv(kHeader + kTrained + kBaseline, "export.csv");
  RunRecord odd;
  odd.name = "kvasir_point_md+pe__7";
  odd.dataset = "kvasir";
  odd.prompt_type = "point";
  odd.recipe = "md+pe";
  odd.trainable_modules = {"mask_decoder", "prompt_encoder"};
  odd.max_epochs = 100;
  odd.metrics = {{kDice, 0.1 + 0.2}, {kMae, 1e-17}};  // no mIoU: stays missing
  t.runs.push_back(odd);

  test::TempDir dir;
  // The study's layout: same header, every field quoted.
  EXPECT_EQ(format_wandb_csv(t).substr(0, kHeader.size()), kHeader);
  RunRecord custom = odd;
  custom.name = "custom run, \"quoted\"";
  custom.recipe = "md";  // not derivable from the name: exported in a recipe column
  t.runs.push_back(custom);
  write_wandb_csv(dir / "out.csv", t);
  const RunTable back = read_wandb_csv(dir / "out.csv");
  ASSERT_EQ(back.runs.size(), t.runs.size());
  for (std::size_t i = 0; i < t.runs.size(); ++i) {
    const RunRecord &a = t.runs[i], &b = back.runs[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dataset, b.dataset);
    EXPECT_EQ(a.prompt_type, b.prompt_type);
    EXPECT_EQ(a.recipe, b.recipe);
    EXPECT_EQ(a.trainable_modules, b.trainable_modules);
    EXPECT_EQ(a.max_epochs, b.max_epochs);
    EXPECT_EQ(a.is_baseline, b.is_baseline);
    EXPECT_EQ(a.metrics, b.metrics);  // exact: floats are written at full precision
  }
  const std::string text = format_wandb_csv(back);
  EXPECT_NE(text.find(kBaseline.substr(0, 40)), std::string::npos);
  EXPECT_NE(text.find(",\"recipe\"\n"), std::string::npos);
  EXPECT_EQ(format_wandb_csv(back), format_wandb_csv(t));
}

TEST(WandbCsv, RecipeFromName) {
  EXPECT_EQ(recipe_from_name("endovis17_point_md+pe+ie__148637", "endovis17", "point"), "md+pe+ie");
  EXPECT_EQ(recipe_from_name("endo_vis_box_mem__1", "endo_vis", "box"), "mem");  // dataset with '_'
  EXPECT_EQ(recipe_from_name("a_b_c", "", ""), "c");
  EXPECT_EQ(recipe_from_name("nounderscore", "", ""), "");
}

}  // namespace
}  // namespace iris::track
