// `iris demo --skip-study` through the binary, briefly trained: the evaluation table with both
// baselines for every unseen structure, and the training config the preset file documents.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/build_info.h"
#include "core/config.h"
#include "data/atlas.h"
#include "train/iris_trainer.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(DemoCli, IrisPartEvaluatesUnseenStructuresAgainstBothBaselinesWithThePresetConfig) {
  if (!build::kHaveNifti) GTEST_SKIP() << "the demo needs NIfTI support";
  if (!is_mricron_atlas_dir(kMricronTemplates)) GTEST_SKIP() << "mricron-data atlases not installed";
  test::TempDir dir;
  const auto r = test::run_command(test::iris_binary() + " --threads 1 -q demo --skip-study" +
                                   " --iterations 3 --out '" + dir.path().string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path run = dir / "iris";
  const auto eval = nlohmann::json::parse(read_text(run / "eval.json"));
  // Up to 10 structures per unseen map, each present in the query and the references.
  const auto structures = static_cast<double>(eval["structures"].size());
  ASSERT_GE(structures, 25) << eval.dump();
  ASSERT_LE(structures, 30) << eval.dump();
  for (const char* key : {"one_shot", "context_ensemble", "copy_reference", "untrained"}) {
    const double mean = eval["mean"][key].get<double>();
    EXPECT_GT(mean, 0.0) << key;
    EXPECT_LT(mean, 1.0) << key;
    double sum = 0;
    for (const auto& s : eval["structures"]) sum += s[key].get<double>();
    EXPECT_NEAR(mean, sum / structures, 1e-9) << key << ": the mean is over structures";
  }
  const std::string table = read_text(run / "eval.md");
  EXPECT_NE(table.find("| one-shot | context ensemble | copy reference | untrained |"),
            std::string::npos)
      << table;
  EXPECT_TRUE(fs::exists(run / "report" / "training_report.md"));
  // Cross-subject: the real atlas in a new pose as the query, generated subjects as references.
  EXPECT_EQ(eval["protocol"]["kind"], "cross-subject");
  EXPECT_NE(table.find("the real Colin27 T1"), std::string::npos) << table;

  // The demo trains what configs/iris/subjects_2d_tiny.yaml says, apart from run, steps and
  // validation cadence.
  const auto demo = load_config<IrisTrainConfig>({(run / "config.yaml").string(), {}});
  auto preset = load_config<IrisTrainConfig>(
      {(fs::path(IRIS_SOURCE_DIR) / "configs/iris/subjects_2d_tiny.yaml").string(), {}});
  preset.run = demo.run;
  preset.optim.iterations = demo.optim.iterations;
  preset.validation.every = demo.validation.every;
  preset.checkpoint_every = demo.checkpoint_every;
  EXPECT_EQ(dump_config(preset), dump_config(demo));
}

}  // namespace
}  // namespace iris
