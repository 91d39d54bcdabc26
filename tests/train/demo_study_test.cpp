// The demo's surgical study: the synthetic domains differ in pixels only, and a very small study
// writes its run folders (baseline + recipe, test-split metrics) and the insights report.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "core/build_info.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "data/synthetic_video.h"
#include "data/video_dataset.h"
#include "test_util.h"
#include "track/run_store.h"
#include "train/demo_study.h"

namespace iris {
namespace {

namespace fs = std::filesystem;

SyntheticVideoOptions small_options() {
  SyntheticVideoOptions o;
  o.videos = 2;
  o.frames = 4;
  o.width = 96;
  o.height = 80;
  o.seed = 1;
  return o;
}

TEST(DemoStudy, DomainAIsTheGeneratorsOriginalLook) {
  // Pixel sums of frame 2 of video 1 as the generator wrote it before domains existed.
  const auto f = render_synthetic_frame(small_options(), 0, 2);
  const auto flat = f.image.to(at::kLong).flatten();
  const auto weights = at::arange(flat.numel(), at::kLong).remainder(7) + 1;
  EXPECT_EQ(flat.sum().item<int64_t>(), 2168303);
  EXPECT_EQ((flat * weights).sum().item<int64_t>(), 8671146);
}

TEST(DemoStudy, DomainChangesPixelsButNotLabels) {
  auto a = small_options();
  auto b = a;
  b.domain = SyntheticDomain::kB;
  for (int64_t t : {0, 3}) {
    const auto fa = render_synthetic_frame(a, 1, t);
    const auto fb = render_synthetic_frame(b, 1, t);
    EXPECT_TRUE(torch::equal(fa.parts, fb.parts)) << "frame " << t;
    EXPECT_TRUE(torch::equal(fa.instance, fb.instance)) << "frame " << t;
    EXPECT_EQ(fa.instrument_types, fb.instrument_types);
    const double diff =
        (fa.image.to(at::kFloat) - fb.image.to(at::kFloat)).abs().mean().item<double>();
    EXPECT_GT(diff, 20.0) << "domain B should look clearly different (mean |A-B| per channel)";
  }
  EXPECT_EQ(parse_synthetic_domain("B"), SyntheticDomain::kB);
  EXPECT_STREQ(synthetic_domain_name(SyntheticDomain::kA), "a");
  EXPECT_THROW(parse_synthetic_domain("c"), InputError);
}

TEST(DemoStudy, DomainKeepsTheDatasetsClassSet) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  test::TempDir dir;
  auto o = small_options();
  o.layout = VideoLayout::kCocoVideo;
  write_synthetic_videos(o, dir / "a");
  o.domain = SyntheticDomain::kB;
  write_synthetic_videos(o, dir / "b");
  const auto a = read_video_dataset(dir / "a");
  const auto b = read_video_dataset(dir / "b");
  ASSERT_EQ(a.classes.size(), b.classes.size());
  for (size_t i = 0; i < a.classes.size(); ++i) {
    EXPECT_EQ(a.classes[i].value, b.classes[i].value);
    EXPECT_EQ(a.classes[i].name, b.classes[i].name);
  }
  const auto sa = scan_video_dataset(a), sb = scan_video_dataset(b);
  EXPECT_EQ(sa.pixels, sb.pixels);  // same label maps, pixel for pixel counts
}

TEST(DemoStudy, SmallStudyWritesRunsAndInsights) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  test::TempDir dir;
  DemoStudyOptions o;
  o.threads = 1;
  o.frame_size = 64;
  o.pretrain_videos = 1;
  o.pretrain_frames = 4;
  o.pretrain_rounds = 1;
  o.train_videos = 1;
  o.val_videos = 1;
  o.test_videos = 1;
  o.frames = 4;
  o.epochs = 1;
  o.recipes = {"md"};
  o.prompt_types = {"point"};
  std::vector<std::string> lines;
  const auto r = run_demo_study((dir / "study").string(), o,
                                [&](const std::string& l) { lines.push_back(l); });

  ASSERT_EQ(r.runs.size(), 2u);
  EXPECT_TRUE(r.runs[0].baseline);
  EXPECT_EQ(r.runs[1].recipe, "md");
  EXPECT_FALSE(lines.empty());
  EXPECT_TRUE(fs::exists(r.pretrained_checkpoint));
  for (const auto& run : r.runs) {
    const auto record = track::read_run_folder(run.run_dir);
    EXPECT_EQ(record.dataset, "surgical-b");
    EXPECT_EQ(record.prompt_type, "point");
    EXPECT_EQ(record.is_baseline, run.baseline) << run.name;
    const auto summary = RunDir::existing(run.run_dir).read_summary();
    EXPECT_EQ(summary["eval/split"], "test");
    ASSERT_TRUE(summary["test/Dice"].is_number()) << run.name;
    EXPECT_DOUBLE_EQ(summary["test/Dice"].get<double>(), run.test_dice);
    EXPECT_DOUBLE_EQ(summary["eval/Dice"].get<double>(), run.test_dice);
    EXPECT_TRUE(summary.contains("val/Dice"));
    EXPECT_TRUE(fs::exists(fs::path(run.run_dir) / "test" / "eval.json"));
    EXPECT_GE(run.test_dice, 0.0);
    EXPECT_LE(run.test_dice, 1.0);
  }
  // The baseline is the pretrained model itself: its test Dice with point prompts is the
  // pretraining's Dice on B.
  EXPECT_DOUBLE_EQ(r.runs[0].test_dice, r.pretrain_dice_b);

  const fs::path insights = fs::path(r.insights_dir) / "insights.md";
  ASSERT_TRUE(fs::exists(insights));
  std::ifstream in(insights);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("surgical-b"), std::string::npos);
  EXPECT_TRUE(fs::exists(fs::path(r.insights_dir) / "insights.json"));
  const auto md = demo_study_markdown(r);
  EXPECT_NE(md.find("| baseline |"), std::string::npos);
  EXPECT_NE(md.find("| md |"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "study" / "study.md"));

  // A second study into the same folder is refused.
  EXPECT_THROW(run_demo_study((dir / "study").string(), o), InputError);
}

TEST(DemoStudy, BuiltInConfigIsTheRepositoryFile) {
  std::ifstream in(fs::path(IRIS_SOURCE_DIR) / "configs" / "sam2" / "demo_micro.yaml");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), std::string(demo_micro_config_yaml()));
}

}  // namespace
}  // namespace iris
