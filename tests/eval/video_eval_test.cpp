// The SAM2 evaluation protocol on a synthetic EndoVis18 tree with the parity fixture's weights:
// the scores of random weights mean nothing, the bookkeeping must be exact.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/build_info.h"
#include "data/synthetic_video.h"
#include "eval/video_eval.h"
#include "models/sam2/sam2_loader.h"
#include "test_util.h"

namespace iris::eval {
namespace {

namespace fs = std::filesystem;

fs::path micro() {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2" / "micro_seed0";
}

TEST(VideoEval, MaskPromptsScoreTheirFrameAndEveryObjectIsPromptedWhereItAppears) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(micro())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  SyntheticVideoOptions s;
  s.videos = 2;
  s.frames = 10;
  s.width = 256;
  s.height = 256;
  s.instruments = 3;
  s.seed = 11;
  s.layout = VideoLayout::kEndoVis18;
  write_synthetic_videos(s, dir / "data");
  const auto dataset = read_video_dataset(dir / "data");
  auto model = models::sam2::load_sam2(micro() / "config.yaml", micro() / "checkpoint.pt");

  VideoEvalOptions o;
  o.prompt = PromptType::kMask;
  const auto r = evaluate_sam2_video(model, dataset, o);
  EXPECT_EQ(r.videos, 2);
  EXPECT_EQ(r.frames, 20);
  ASSERT_FALSE(r.objects.empty());
  // Each object is prompted on the first frame its class is in the ground truth.
  for (const auto& obj : r.objects) {
    EXPECT_TRUE(obj.prompted) << obj.class_name;
    const auto& video = *std::find_if(dataset.videos.begin(), dataset.videos.end(),
                                      [&](const Video& v) { return v.id == obj.video; });
    int64_t first = -1;
    for (size_t t = 0; t < video.frames.size() && first < 0; ++t) {
      for (const auto& m : load_object_masks(dataset, video.frames[t])) {
        if (m.class_value == obj.class_value && (m.mask != 0).any().item<bool>()) first = t;
      }
    }
    EXPECT_EQ(obj.first_frame, first) << obj.video << " " << obj.class_name;
  }
  // A mask prompt is its own output on the prompt frame (through the low-resolution round trip).
  for (const auto& obj : r.objects) {
    for (const auto& s : r.dice) {
      if (s.video == obj.video && s.cls == obj.class_name && s.frame == obj.first_frame) {
        EXPECT_GT(s.value, 0.8) << obj.class_name << " on its prompt frame";
      }
    }
  }
  // One score per (video, frame, tracked class); NaN only where the class is absent.
  EXPECT_EQ(r.dice.size(), r.mae.size());
  EXPECT_EQ(r.dice_summary.scored + r.dice_summary.skipped, static_cast<int64_t>(r.dice.size()));
  EXPECT_EQ(r.mae_summary.skipped, 0);

  write_video_eval(r, o, dir / "out");
  std::ifstream in(dir / "out" / "eval.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["protocol"]["prompt"], "mask");
  EXPECT_EQ(j["objects"].size(), r.objects.size());
  EXPECT_DOUBLE_EQ(j["dice"]["macro"].get<double>(), r.dice_summary.macro);
  EXPECT_TRUE(fs::exists(dir / "out" / "eval.md"));
}

TEST(VideoEval, CommandWritesTheTables) {
  if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
  if (!fs::exists(micro())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  test::TempDir dir;
  SyntheticVideoOptions s;
  s.videos = 1;
  s.frames = 4;
  s.width = 256;
  s.height = 256;
  s.layout = VideoLayout::kCholecSeg8k;
  write_synthetic_videos(s, dir / "data");
  const auto cmd = test::iris_binary() + " eval sam2 '" + (dir / "data").string() + "' --config '" +
                   (micro() / "config.yaml").string() + "' --checkpoint '" +
                   (micro() / "checkpoint.pt").string() + "' --prompt point --out '" +
                   (dir / "out").string() + "'";
  const auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 videos, 4 frames"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "eval.json"));
  const auto bad = test::run_command(test::iris_binary() + " eval sam2 '" + (dir / "data").string() +
                                     "' --config x --checkpoint y --prompt scribble --out z");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

}  // namespace
}  // namespace iris::eval
