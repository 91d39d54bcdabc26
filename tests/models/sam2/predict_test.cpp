// `iris predict sam2` end to end on synthetic inputs with the parity fixture's weights: the masks
// need not be good (random weights), but every step of the plumbing must be exact.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/build_info.h"
#include "core/error.h"
#include "data/synthetic_video.h"
#include "io/image_io.h"
#include "models/sam2/offload_util.h"
#include "models/sam2/sam2_predict.h"
#include "test_util.h"
#if IRIS_HAVE_NIFTI
#include "io/nifti.h"
#endif

namespace iris::models::sam2 {
namespace {

namespace fs = std::filesystem;


std::string predict_command(const std::string& input, const fs::path& out) {
  return test::iris_binary() + " predict sam2 '" + input + "' --config '" +
         (test::sam2_fixture() / "config.yaml").string() + "' --checkpoint '" +
         (test::sam2_fixture() / "checkpoint.pt").string() + "' --out '" + out.string() + "'";
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

double iou(const at::Tensor& a, const at::Tensor& b) {
  const auto i = (a & b).sum().item<double>();
  const auto u = (a | b).sum().item<double>();
  return u > 0 ? i / u : 1.0;
}

class PredictSam2 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!build::kHaveOpenCV) GTEST_SKIP() << "needs OpenCV";
    if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
    options_.videos = 1;
    options_.frames = 6;
    options_.width = 256;
    options_.height = 256;
    options_.instruments = 2;
    options_.seed = 4;
    fs::create_directories(dir_ / "frames");
    for (int64_t t = 0; t < options_.frames; ++t) {
      frames_.push_back(render_synthetic_frame(options_, 0, t));
      write_image(dir_ / "frames" / ("frame" + std::to_string(t) + ".png"), frames_.back().image);
    }
  }
  // The instrument covering most of frame t.
  at::Tensor largest_instrument(int64_t t) const {
    const auto& inst = frames_[t].instance;
    at::Tensor best = inst == 1;
    for (int64_t k = 2; k <= options_.instruments; ++k) {
      if ((inst == k).sum().item<int64_t>() > best.sum().item<int64_t>()) best = inst == k;
    }
    return best;
  }

  SyntheticVideoOptions options_;
  std::vector<SyntheticFrame> frames_;
  test::TempDir dir_;
};

TEST_F(PredictSam2, FramesFolderWithMaskAndBoxPromptsOnDifferentFrames) {
  // Object 1: a mask prompt on frame 0. Object 2: a box around an instrument on frame 2, so
  // frames 0-1 come from tracking backwards.
  const auto m1 = largest_instrument(0);
  ASSERT_GT(m1.sum().item<int64_t>(), 200);
  write_image(dir_ / "mask1.png", m1.to(torch::kUInt8) * 255);
  const auto m2 = largest_instrument(2);
  ASSERT_GT(m2.sum().item<int64_t>(), 200);
  const auto nz = torch::nonzero(m2);
  const auto y = nz.select(1, 0), x = nz.select(1, 1);
  nlohmann::json prompts = nlohmann::json::array();
  prompts.push_back({{"frame", 0}, {"obj_id", 1}, {"type", "mask"}, {"mask", "mask1.png"}});
  prompts.push_back({{"frame", 2},
                     {"obj_id", 2},
                     {"type", "box"},
                     {"box", {x.min().item<int64_t>(), y.min().item<int64_t>(),
                              x.max().item<int64_t>(), y.max().item<int64_t>()}}});
  std::ofstream(dir_ / "prompts.json") << prompts.dump();

  const auto out = dir_ / "out";
  const auto r = test::run_command(predict_command((dir_ / "frames").string(), out) +
                                   " --prompts '" + (dir_ / "prompts.json").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("object 1: present in"), std::string::npos) << r.output;

  const auto summary = read_json(out / "prediction.json");
  EXPECT_EQ(summary["kind"], "frames");
  EXPECT_EQ(summary["frames"], options_.frames);
  EXPECT_EQ(summary["objects"], nlohmann::json::array({1, 2}));
  for (int64_t t = 0; t < options_.frames; ++t) {
    const auto name = "frame" + std::to_string(t) + ".png";
    ASSERT_TRUE(fs::exists(out / "masks" / name));
    ASSERT_TRUE(fs::exists(out / "overlay" / name));
    const auto labels = read_image_raw(out / "masks" / name);
    ASSERT_EQ(labels.sizes(), (std::vector<int64_t>{256, 256}));
    // Only background and the two object ids, and the areas in the JSON are the label counts
    // where the objects do not overlap.
    const auto other = (labels != 0) & (labels != 1) & (labels != 2);
    EXPECT_EQ(other.sum().item<int64_t>(), 0);
    EXPECT_LE((labels == 1).sum().item<int64_t>(), summary["area_pixels"]["1"][t].get<int64_t>());
  }
  // The mask prompt is the output on its frame (up to the low-resolution round trip).
  const auto frame0 = read_image_raw(out / "masks" / "frame0.png");
  EXPECT_GT(iou(frame0 == 1, m1), 0.85);
  // Object 2 was tracked backwards to the frames before its prompt.
  EXPECT_TRUE(summary["area_pixels"]["2"].is_array());
  EXPECT_EQ(summary["area_pixels"]["2"].size(), static_cast<size_t>(options_.frames));
}

TEST_F(PredictSam2, VideoFileGivesPerFrameMasksAndAnOverlayVideo) {
  {
    VideoWriter writer(dir_ / "clip.avi", 256, 256, 10.0, "MJPG");
    for (const auto& f : frames_) writer.write(f.image);
    writer.close();
  }
  const auto out = dir_ / "out";
  const auto r = test::run_command(predict_command((dir_ / "clip.avi").string(), out) +
                                   " --point 150,110,1 --point 20,20,0 --frame 1 --object 7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto summary = read_json(out / "prediction.json");
  EXPECT_EQ(summary["kind"], "video");
  EXPECT_EQ(summary["objects"], nlohmann::json::array({7}));
  EXPECT_EQ(summary["frames"], options_.frames);
  for (int64_t t = 0; t < options_.frames; ++t) {
    char name[32];
    std::snprintf(name, sizeof(name), "frame_%05lld.png", static_cast<long long>(t));
    EXPECT_TRUE(fs::exists(out / "masks" / name)) << name;
  }
  const fs::path overlay = fs::exists(out / "overlay.mp4") ? out / "overlay.mp4" : out / "overlay.avi";
  ASSERT_TRUE(fs::exists(overlay));
  VideoReader reader(overlay);
  int64_t n = 0;
  for (auto f = reader.next(); f.defined(); f = reader.next()) ++n;
  EXPECT_EQ(n, options_.frames);
}

#if IRIS_HAVE_NIFTI
TEST_F(PredictSam2, VolumeSlicesAsFramesKeepTheSourceGeometry) {
  // A 20 x 40 x 48 volume (k, j, i) with a bright box through slices 5..14 and an oblique affine.
  Volume v;
  v.data = torch::rand({20, 40, 48}) * 100;
  v.data.slice(0, 5, 15).slice(1, 10, 30).slice(2, 12, 36).add_(400);
  v.affine = Affine::diagonal(0.8, 0.9, 2.5);
  v.affine(0, 1) = 0.1;
  v.affine(0, 3) = -12.0;
  v.affine(2, 3) = 30.0;
  write_nifti(dir_ / "vol.nii.gz", v);
  const auto out = dir_ / "out";
  const auto r = test::run_command(predict_command((dir_ / "vol.nii.gz").string(), out) +
                                   " --box 12,10,36,30 --frame 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto labels = read_nifti(out / "masks.nii.gz");
  EXPECT_EQ(labels.data.sizes(), v.data.sizes());
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(labels.affine.m[i], v.affine.m[i], 1e-5) << i;
  const auto summary = read_json(out / "prediction.json");
  EXPECT_EQ(summary["kind"], "volume");
  EXPECT_EQ(summary["frames"], 20);
  EXPECT_TRUE(fs::exists(out / "overlay" / "slice_0008.png"));
}
#endif

TEST_F(PredictSam2, BadPromptsAreClearErrors) {
  const auto frames = (dir_ / "frames").string();
  auto r = test::run_command(predict_command(frames, dir_ / "o1") + " --box 10,10,50,50 --frame 9");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("frame 9"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("6 frames"), std::string::npos) << r.output;

  write_image(dir_ / "small.png", torch::ones({10, 12}, torch::kUInt8));
  r = test::run_command(predict_command(frames, dir_ / "o2") + " --mask '" +
                        (dir_ / "small.png").string() + "'");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("small.png"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("12x10"), std::string::npos) << r.output;

  r = test::run_command(predict_command(frames, dir_ / "o3") + " --point 300,20");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("outside"), std::string::npos) << r.output;

  r = test::run_command(predict_command(frames, dir_ / "o4"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no prompts"), std::string::npos) << r.output;

  r = test::run_command(predict_command(frames, dir_ / "o5") + " --point 1,2,3,4");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "o1" / "prediction.json"));
}

TEST(Sam2Prompts, JsonErrorsNameFileAndField) {
  test::TempDir dir;
  std::ofstream(dir / "p.json") << R"([{"frame": 0, "type": "box"}])";
  try {
    read_prompts_json(dir / "p.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("p.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("prompt 0: missing field 'box'"), std::string::npos)
        << e.what();
  }
  std::ofstream(dir / "q.json") << R"([{"type": "points", "points": [[1, 2]], "labels": [1, 0]}])";
  EXPECT_THROW(read_prompts_json(dir / "q.json"), InputError);
  const auto p = parse_point_prompt("3.5,4", 2, 5);
  EXPECT_EQ(p.labels, std::vector<int32_t>{1});
  EXPECT_EQ(p.frame, 2);
  EXPECT_THROW(parse_box_prompt("5,5,1,1", 0, 1), UsageError);
}

// The official predictor's offloading keeps frames, memories and masks in host memory and moves
// them to the device when read: on the CPU the same tensors take every path through that
// bookkeeping, and the masks must not change by a bit.
TEST(Sam2Offload, FramesAndStateInHostMemoryGiveIdenticalMasks) {
  if (!fs::exists(test::sam2_fixture())) GTEST_SKIP() << "needs ../shared/fixtures/sam2/micro_seed0";
  const c10::Device cpu(c10::kCPU);
  const auto reference = offload::track_synthetic_clip(cpu, {});
  ASSERT_EQ(reference.size(), 2u + 6u + 4u + 1u + 6u) << "prompts, forward, reverse, correction";
  for (const bool video : {false, true}) {
    for (const bool state : {false, true}) {
      if (!video && !state) continue;
      VideoStateOptions o;
      o.offload_video_to_cpu = video;
      o.offload_state_to_cpu = state;
      const auto masks = offload::track_synthetic_clip(cpu, o);
      ASSERT_EQ(masks.size(), reference.size());
      for (size_t i = 0; i < masks.size(); ++i) {
        EXPECT_TRUE(torch::equal(masks[i], reference[i]))
            << "output " << i << " with offload_video " << video << ", offload_state " << state;
      }
    }
  }
}

TEST_F(PredictSam2, OffloadFlagsReachThePredictorAndItsSummary) {
  const auto out = dir_ / "out";
  const auto r = test::run_command(predict_command((dir_ / "frames").string(), out) +
                                   " --box 60,60,160,160 --offload-video --offload-state");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto summary = read_json(out / "prediction.json");
  EXPECT_EQ(summary["offload"], nlohmann::json({{"video", true}, {"state", true}}));
  const auto plain = dir_ / "plain";
  ASSERT_EQ(
      test::run_command(predict_command((dir_ / "frames").string(), plain) + " --box 60,60,160,160")
          .exit_code,
      0);
  EXPECT_EQ(read_json(plain / "prediction.json")["area_pixels"], summary["area_pixels"]);
}

}  // namespace
}  // namespace iris::models::sam2
