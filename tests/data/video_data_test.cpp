#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"
#include "data/inspect.h"
#include "data/synthetic_video.h"
#include "data/video_dataset.h"
#include "io/image_io.h"
#include "io/rle.h"
#include "test_util.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

#define IRIS_REQUIRE_OPENCV() \
  if (!IRIS_HAVE_OPENCV) GTEST_SKIP() << "OpenCV is off in this build"

// Expects an InputError mentioning every needle, on one line.
template <typename F>
std::string expect_input_error(F&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const InputError& e) {
    const std::string m = e.what();
    for (const auto& n : needles)
      EXPECT_NE(m.find(n), std::string::npos) << m << "\nmissing: " << n;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
    return m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected InputError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

SyntheticVideoOptions small(VideoLayout layout, uint64_t seed = 3) {
  SyntheticVideoOptions o;
  o.videos = 2;
  o.frames = 4;
  o.width = 96;
  o.height = 80;
  o.seed = seed;
  o.layout = layout;
  return o;
}

bool contains(const std::vector<std::string>& lines, const std::string& a, const std::string& b) {
  for (const auto& l : lines) {
    if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
  }
  return false;
}

// --- image and video files ------------------------------------------------------------------

TEST(ImageIo, PngRoundTripsColourGreyAnd16Bit) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  const auto rgb = at::randint(0, 256, {7, 9, 3}, at::kLong).to(at::kByte);
  write_image(dir / "c.png", rgb);
  EXPECT_TRUE(read_image_rgb(dir / "c.png").equal(rgb));
  EXPECT_TRUE(read_image_raw(dir / "c.png").equal(rgb)) << "channels stay in RGB order";
  const auto grey = at::randint(0, 256, {5, 6}, at::kLong).to(at::kByte);
  write_image(dir / "g.png", grey);
  EXPECT_TRUE(read_image_raw(dir / "g.png").equal(grey));
  EXPECT_EQ(read_image_rgb(dir / "g.png").sizes(), (std::vector<int64_t>{5, 6, 3}));
  const auto wide = at::randint(0, 65536, {4, 3}, at::kLong);
  write_image(dir / "w.png", wide);
  EXPECT_TRUE(read_image_raw(dir / "w.png").to(at::kLong).equal(wide));
  const ImageSize s = read_image_size(dir / "c.png");
  EXPECT_EQ(s.height, 7);
  EXPECT_EQ(s.width, 9);
  write_image(dir / "c.jpg", rgb);
  EXPECT_EQ(read_image_rgb(dir / "c.jpg").sizes(), rgb.sizes());
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "temp file left";
  }
}

TEST(ImageIo, NotAPngIsAOneLineInputErrorNamingTheFile) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  write_file_atomic(dir / "frame007.png", "this is text, not an image");
  expect_input_error([&] { read_image_rgb(dir / "frame007.png"); }, {"frame007.png", "not a PNG"});
  expect_input_error([&] { read_image_size(dir / "frame007.png"); }, {"frame007.png", "not a PNG"});
  // A PNG signature with garbage behind it.
  write_file_atomic(dir / "cut.png", std::string("\x89PNG\r\n\x1a\n", 8) + "garbage");
  expect_input_error([&] { read_image_raw(dir / "cut.png"); }, {"cut.png"});
  expect_input_error([&] { read_image_rgb(dir / "missing.png"); }, {"missing.png", "no such"});
}

TEST(ImageIo, FramesSortNaturally) {
  EXPECT_TRUE(natural_less("frame2.png", "frame10.png"));
  EXPECT_FALSE(natural_less("frame10.png", "frame2.png"));
  EXPECT_TRUE(natural_less("frame_9_endo.png", "frame_80_endo.png"));
  EXPECT_TRUE(natural_less("a", "b"));
  EXPECT_FALSE(natural_less("x1", "x1"));
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  const auto px = at::zeros({2, 2}, at::kByte);
  for (const char* n : {"frame10.png", "frame2.png", "frame1.jpg", "notes.txt", "frame100.png"}) {
    if (std::string(n).ends_with(".txt")) {
      write_file_atomic(dir / n, "x");
    } else {
      write_image(dir / n, px);
    }
  }
  std::vector<std::string> names;
  for (const auto& p : list_frames(dir.path())) names.push_back(p.filename().string());
  EXPECT_EQ(names,
            (std::vector<std::string>{"frame1.jpg", "frame2.png", "frame10.png", "frame100.png"}));
}

TEST(ImageIo, VideoFileRoundTrip) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  SyntheticVideoOptions o = small(VideoLayout::kEndoVis18);
  std::vector<at::Tensor> frames;
  {
    VideoWriter writer(dir / "clip.avi", o.width, o.height, 10.0, "MJPG");
    for (int64_t t = 0; t < 5; ++t) {
      frames.push_back(render_synthetic_frame(o, 0, t).image);
      writer.write(frames.back());
    }
    EXPECT_FALSE(fs::exists(dir / "clip.avi")) << "only close() publishes the file";
    writer.close();
  }
  VideoReader reader(dir / "clip.avi");
  EXPECT_EQ(reader.width(), o.width);
  EXPECT_EQ(reader.height(), o.height);
  EXPECT_NEAR(reader.fps(), 10.0, 1e-6);
  int64_t n = 0;
  for (at::Tensor f = reader.next(); f.defined(); f = reader.next(), ++n) {
    ASSERT_LT(n, 5);
    const double err = (f.to(at::kFloat) - frames[n].to(at::kFloat)).abs().mean().item<double>();
    EXPECT_LT(err, 8.0) << "frame " << n << " (lossy MJPEG)";
  }
  EXPECT_EQ(n, 5);
  expect_input_error([&] { VideoReader bad(dir / "none.mp4"); }, {"none.mp4"});
}

// --- synthetic clips ------------------------------------------------------------------------

TEST(SyntheticVideo, DeterministicBySeedAndInstrumentsMoveEnterAndLeave) {
  SyntheticVideoOptions o = small(VideoLayout::kEndoVis18, 11);
  o.frames = 8;
  const auto a = render_synthetic_frame(o, 1, 3);
  const auto b = render_synthetic_frame(o, 1, 3);
  EXPECT_TRUE(a.image.equal(b.image));
  EXPECT_TRUE(a.parts.equal(b.parts));
  SyntheticVideoOptions other = o;
  other.seed = 12;
  EXPECT_FALSE(render_synthetic_frame(other, 1, 3).image.equal(a.image));
  EXPECT_FALSE(render_synthetic_frame(o, 0, 3).image.equal(a.image)) << "videos differ";

  // Instrument 1 stays and moves; 2 enters during the clip; 3 leaves.
  const auto centroid = [](const at::Tensor& m) {
    const auto idx = m.nonzero().to(at::kFloat);
    return idx.mean(0);
  };
  const auto f0 = render_synthetic_frame(o, 0, 0);
  const auto f3 = render_synthetic_frame(o, 0, 3);
  const auto f7 = render_synthetic_frame(o, 0, 7);
  ASSERT_GT((f0.instance == 1).sum().item<int64_t>(), 20);
  ASSERT_GT((f3.instance == 1).sum().item<int64_t>(), 20);
  const double moved =
      (centroid(f0.instance == 1) - centroid(f3.instance == 1)).norm().item<double>();
  EXPECT_GT(moved, 2.0) << "instrument 1 did not move";
  EXPECT_EQ((f0.instance == 2).sum().item<int64_t>(), 0) << "instrument 2 enters later";
  EXPECT_GT((f7.instance == 2).sum().item<int64_t>(), 0);
  EXPECT_GT((f0.instance == 3).sum().item<int64_t>(), 0);
  EXPECT_EQ((f7.instance == 3).sum().item<int64_t>(), 0) << "instrument 3 has left";
  // Every part is there: border, tissue, anatomy, shaft, jaws.
  for (int part : {kPartTissue, kPartAnatomyA, kPartBorder, kPartShaft, kPartJaws}) {
    EXPECT_GT((f3.parts == part).sum().item<int64_t>(), 0) << "part " << part;
  }
}

// --- the native layouts, read back ----------------------------------------------------------

class LayoutTest : public ::testing::TestWithParam<VideoLayout> {};

TEST_P(LayoutTest, SyntheticTreeReadsBack) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  const auto o = small(GetParam());
  EXPECT_EQ(write_synthetic_videos(o, dir.path()), 8);
  ASSERT_EQ(detect_video_layout(dir.path()), GetParam());
  const VideoDataset ds = read_video_dataset(dir.path());
  EXPECT_EQ(ds.layout, GetParam());
  ASSERT_EQ(ds.videos.size(), 2u);
  EXPECT_EQ(ds.frame_count(), 8);
  EXPECT_TRUE(ds.problems.empty()) << ds.problems.front();
  const VideoDatasetScan scan = scan_video_dataset(ds);
  EXPECT_TRUE(scan.problems.empty()) << scan.problems.front();
  EXPECT_EQ(scan.sizes.size(), 1u);
  EXPECT_EQ(scan.sizes.begin()->first, (std::pair<int64_t, int64_t>{96, 80}));

  for (int64_t t = 0; t < 4; ++t) {
    const VideoFrame& f = ds.videos[1].frames[t];
    EXPECT_EQ(f.index, t);
    const auto truth = render_synthetic_frame(o, 1, t);
    EXPECT_TRUE(load_frame_image(f).equal(truth.image)) << "PNG frames are lossless";
    const auto labels = load_label_map(ds, f);
    const auto objects = load_object_masks(ds, f);
    const auto tool = truth.instance > 0;
    switch (GetParam()) {
      case VideoLayout::kCholecSeg8k:
        EXPECT_TRUE((labels == 0).equal(truth.parts == kPartBorder));  // Black Background
        EXPECT_TRUE(((labels == 5) | (labels == 9)).equal(tool));      // Grasper, L-hook
        EXPECT_TRUE((labels == 10).equal((truth.parts == kPartAnatomyB)));
        break;
      case VideoLayout::kEndoVis18:
        EXPECT_TRUE((labels == 1).equal(truth.parts == kPartShaft));
        EXPECT_TRUE((labels == 2).equal(truth.parts == kPartJaws));
        EXPECT_TRUE((labels == 4).equal(truth.parts == kPartAnatomyA));
        EXPECT_EQ((labels == kUnlabelled).sum().item<int64_t>(), 0);
        break;
      case VideoLayout::kEndoVis17: {
        ASSERT_EQ(objects.size(), 3u) << "one mask file per instrument and frame";
        auto any = at::zeros_like(tool);
        for (std::size_t k = 0; k < objects.size(); ++k) {
          EXPECT_TRUE((objects[k].mask != 0).equal(truth.instance == static_cast<int64_t>(k + 1)));
          EXPECT_EQ(objects[k].class_value,
                    *endovis17_instrument_class(objects[k].name + "_labels"));
          any |= objects[k].mask != 0;
        }
        EXPECT_TRUE((labels > 0).equal(any));
        break;
      }
      case VideoLayout::kCocoVideo: {
        EXPECT_TRUE(((labels >= 0) & (labels <= 2)).equal(tool)) << "instrument categories 0..2";
        int64_t instruments = 0;
        for (const auto& obj : objects) instruments += obj.class_value <= 2 ? 1 : 0;
        const auto visible = std::get<0>(at::_unique(truth.instance.masked_select(tool)));
        EXPECT_EQ(instruments, visible.numel()) << "one annotation per visible instrument";
        break;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(VideoData, LayoutTest,
                         ::testing::Values(VideoLayout::kCholecSeg8k, VideoLayout::kEndoVis17,
                                           VideoLayout::kEndoVis18, VideoLayout::kCocoVideo),
                         [](const auto& info) { return layout_name(info.param); });

TEST(VideoData, ClassTablesArePublished) {
  const auto cholec = cholecseg8k_classes();
  ASSERT_EQ(cholec.size(), 13u);
  EXPECT_EQ(cholec[2].name, "Liver");
  EXPECT_EQ(cholec[2].code, 21);
  EXPECT_EQ(cholec[12].code, 5);
  const auto e18 = endovis18_classes();
  ASSERT_EQ(e18.size(), 12u);
  EXPECT_EQ(e18[1].name, "instrument-shaft");
  EXPECT_EQ(e18[1].color, (std::array<uint8_t, 3>{0, 255, 0}));
  EXPECT_TRUE(e18[0].background);
  EXPECT_EQ(endovis17_instrument_class("Maryland_Bipolar_Forceps_labels"), 1);
  EXPECT_EQ(endovis17_instrument_class("Right_Large_Needle_Driver_labels"), 3);
  EXPECT_EQ(endovis17_instrument_class("Other_labels"), 7);
  EXPECT_EQ(endovis17_instrument_class("Mystery_labels"), std::nullopt);
}

// --- convert ----------------------------------------------------------------------------------

void expect_same_labels(const VideoDataset& a, const VideoDataset& b) {
  ASSERT_EQ(a.videos.size(), b.videos.size());
  for (std::size_t v = 0; v < a.videos.size(); ++v) {
    ASSERT_EQ(a.videos[v].frames.size(), b.videos[v].frames.size());
    for (std::size_t t = 0; t < a.videos[v].frames.size(); ++t) {
      EXPECT_TRUE(
          load_label_map(a, a.videos[v].frames[t]).equal(load_label_map(b, b.videos[v].frames[t])))
          << "video " << v << " frame " << t;
      EXPECT_TRUE(
          load_frame_image(a.videos[v].frames[t]).equal(load_frame_image(b.videos[v].frames[t])));
    }
  }
}

TEST(VideoData, CocoRoundTripThroughConvertKeepsMasks) {
  IRIS_REQUIRE_OPENCV();
  for (const auto layout : {VideoLayout::kEndoVis18, VideoLayout::kCholecSeg8k}) {
    TempDir dir;
    write_synthetic_videos(small(layout), dir / "native");
    EXPECT_EQ(convert_video_dataset(dir / "native", dir / "coco", VideoLayout::kCocoVideo), 8);
    EXPECT_EQ(convert_video_dataset(dir / "coco", dir / "back", layout), 8);
    const auto native = read_video_dataset(dir / "native");
    const auto coco = read_video_dataset(dir / "coco" / "annotations.json");
    const auto back = read_video_dataset(dir / "back");
    EXPECT_TRUE(coco.problems.empty());
    EXPECT_EQ(back.layout, layout);
    expect_same_labels(native, back);
    // The COCO masks are the native class masks (background classes are not exported).
    for (std::size_t t = 0; t < 4; ++t) {
      const auto& nf = native.videos[0].frames[t];
      const auto& cf = coco.videos[0].frames[t];
      const auto n_objects = load_object_masks(native, nf);
      const auto c_objects = load_object_masks(coco, cf);
      ASSERT_EQ(n_objects.size(), c_objects.size());
      for (std::size_t k = 0; k < n_objects.size(); ++k) {
        EXPECT_EQ(n_objects[k].class_value, c_objects[k].class_value);
        EXPECT_TRUE(n_objects[k].mask.equal(c_objects[k].mask));
      }
    }
  }
}

TEST(VideoData, ConvertRefusesClassesTheTargetLacks) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  write_synthetic_videos(small(VideoLayout::kCocoVideo), dir / "coco");
  expect_input_error(
      [&] { convert_video_dataset(dir / "coco", dir / "out", VideoLayout::kEndoVis18); },
      {"Grasper", "endovis18"});
}

TEST(VideoData, CocoRleAgreesWithPycocotools) {
  IRIS_REQUIRE_OPENCV();
  const auto python = test::venv_python();
  if (python.empty()) GTEST_SKIP() << "needs .venv/bin/python with pycocotools";
  TempDir dir;
  write_synthetic_videos(small(VideoLayout::kEndoVis18, 5), dir / "native");
  convert_video_dataset(dir / "native", dir / "coco", VideoLayout::kCocoVideo);
  const fs::path json_file = dir / "coco" / "annotations.json";
  // One annotation with uncompressed (list) counts, which readers must accept too.
  auto doc = nlohmann::json::parse(read_file(json_file));
  ASSERT_GT(doc["annotations"].size(), 4u);
  {
    auto& seg = doc["annotations"][3]["segmentation"];
    const Rle rle = rle_from_json(seg, "test");
    seg["counts"] = rle.counts;
    write_file_atomic(json_file, doc.dump());
  }
  const std::string script = std::string(IRIS_SOURCE_DIR) + "/tests/data/coco_rle_reference.py";
  const auto r = test::run_command("'" + python.string() + "' '" + script + "' '" +
                                   json_file.string() + "' '" + (dir / "ref.json").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = nlohmann::json::parse(read_file(dir / "ref.json"));
  ASSERT_EQ(ref.size(), doc["annotations"].size());
  for (const auto& ann : doc["annotations"]) {
    const auto& e = ref[std::to_string(ann["id"].get<int64_t>())];
    const auto mask = rle_decode(rle_from_json(ann["segmentation"], "test"));
    const auto idx = mask.reshape({-1}).nonzero().reshape({-1});
    uint64_t s1 = 0;
    uint64_t s2 = 0;
    for (int64_t i = 0; i < idx.numel(); ++i) {
      const auto k = static_cast<uint64_t>(idx[i].item<int64_t>());
      s1 += k;
      s2 += k * k;
    }
    EXPECT_EQ(e["area"].get<int64_t>(), idx.numel());
    EXPECT_EQ(e["api_area"].get<int64_t>(), ann["area"].get<int64_t>());
    EXPECT_EQ(e["s1"].get<uint64_t>(), s1);
    EXPECT_EQ(e["s2"].get<uint64_t>(), s2);
    EXPECT_EQ(e["bbox"], ann["bbox"]);
    EXPECT_TRUE(e["same_counts"].get<bool>()) << "pycocotools re-encodes to other counts";
  }
  // The list-count annotation reads back to the same label maps.
  expect_same_labels(read_video_dataset(dir / "native"), [&] {
    convert_video_dataset(dir / "coco", dir / "back", VideoLayout::kEndoVis18);
    return read_video_dataset(dir / "back");
  }());
}

// --- bad input ------------------------------------------------------------------------------

TEST(VideoData, BadInputsAreOneLineErrorsAndInspectListsThemAll) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  write_synthetic_videos(small(VideoLayout::kEndoVis18), dir.path());
  const fs::path labels = dir / "seq_1" / "labels";
  // Not a PNG.
  write_file_atomic(labels / "frame000.png", "<html>not a png</html>");
  // Wrong size.
  write_image(labels / "frame001.png", at::zeros({40, 48, 3}, at::kByte));
  // Unknown colour.
  auto lab = read_image_raw(labels / "frame002.png");
  lab.slice(0, 0, 2).slice(1, 0, 3).select(2, 0).fill_(1);
  lab.slice(0, 0, 2).slice(1, 0, 3).select(2, 1).fill_(2);
  lab.slice(0, 0, 2).slice(1, 0, 3).select(2, 2).fill_(3);
  write_image(labels / "frame002.png", lab);
  // Missing mask.
  fs::remove(dir / "seq_2" / "labels" / "frame003.png");

  const VideoDataset ds = read_video_dataset(dir.path());
  const auto& frames = ds.videos[0].frames;
  expect_input_error([&] { load_label_map(ds, frames[0]); }, {"frame000.png", "not a PNG"});
  expect_input_error([&] { load_label_map(ds, frames[1]); },
                     {"frame001.png", "mask is 48x40", "96x80"});
  expect_input_error([&] { load_label_map(ds, frames[2]); },
                     {"frame002.png", "6 pixels", "(1,2,3)"});

  const InspectReport report = inspect_path(dir.path());
  EXPECT_EQ(report.layout, "endovis18 video dataset");
  EXPECT_EQ(report.problems.size(), 4u) << report.to_text(20);
  EXPECT_TRUE(contains(report.problems, "frame000.png", "not a PNG"));
  EXPECT_TRUE(contains(report.problems, "frame001.png", "mask is"));
  EXPECT_TRUE(contains(report.problems, "frame002.png", "not in the endovis18 class table"));
  EXPECT_TRUE(contains(report.problems, "seq_2", "no label file"));
  const std::string text = report.to_text(20);
  EXPECT_NE(text.find("instrument-shaft"), std::string::npos) << text;
  EXPECT_NE(text.find("2 videos, 8 frames"), std::string::npos) << text;
}

TEST(VideoData, CholecSeg8kColourMaskAndUnknownGreyValues) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  write_synthetic_videos(small(VideoLayout::kCholecSeg8k), dir.path());
  const fs::path clip = dir / "video01" / "video01_00000";
  ASSERT_TRUE(fs::exists(clip / "frame_0_endo_watershed_mask.png"));
  // The colour mask stored where the watershed mask belongs.
  auto colour = at::zeros({80, 96, 3}, at::kByte);
  colour.select(2, 0).fill_(255);
  write_image(clip / "frame_1_endo_watershed_mask.png", colour);
  auto grey = read_image_raw(clip / "frame_2_endo_watershed_mask.png");
  grey.slice(0, 10, 12).fill_(77);
  write_image(clip / "frame_2_endo_watershed_mask.png", grey);
  // Decoys beside the frames: these names must not count as frames.
  write_image(clip / "frame_0_endo_color_mask.png", colour);
  write_image(clip / "frame_0_endo_mask.png", colour);
  const VideoDataset ds = read_video_dataset(dir.path());
  EXPECT_EQ(ds.frame_count(), 8);
  expect_input_error([&] { load_label_map(ds, ds.videos[0].frames[1]); },
                     {"frame_1_endo_watershed_mask.png", "colour mask"});
  expect_input_error(
      [&] { load_label_map(ds, ds.videos[0].frames[2]); },
      {"frame_2_endo_watershed_mask.png", "grey values not in the CholecSeg8k table: 77"});
}

TEST(VideoData, CocoJsonWithAMissingFieldNamesFileAndField) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  write_synthetic_videos(small(VideoLayout::kCocoVideo), dir.path());
  auto doc = nlohmann::json::parse(read_file(dir / "annotations.json"));
  doc["images"][1].erase("video_id");
  write_file_atomic(dir / "bad.json", doc.dump());
  expect_input_error([&] { read_coco_video(dir / "bad.json"); },
                     {"bad.json", "images[1]", "\"video_id\""});
  doc = nlohmann::json::parse(read_file(dir / "annotations.json"));
  doc["annotations"][2].erase("segmentation");
  write_file_atomic(dir / "bad2.json", doc.dump());
  expect_input_error([&] { read_coco_video(dir / "bad2.json"); },
                     {"bad2.json", "annotations[2]", "\"segmentation\""});
  doc.erase("categories");
  write_file_atomic(dir / "bad3.json", doc.dump());
  expect_input_error([&] { read_coco_video(dir / "bad3.json"); }, {"bad3.json", "\"categories\""});
  write_file_atomic(dir / "bad4.json", "{\"images\": [");
  expect_input_error([&] { read_coco_video(dir / "bad4.json"); }, {"bad4.json", "not valid JSON"});
}

// --- the command line -------------------------------------------------------------------------

TEST(VideoDataCli, SynthInspectConvert) {
  IRIS_REQUIRE_OPENCV();
  TempDir dir;
  const std::string iris = test::iris_binary();
  auto r = test::run_command(iris + " data synth surgical-video --out '" + (dir / "c").string() +
                             "' --videos 1 --frames 3 --seed 4 --layout cholecseg8k --size 64x48");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_command(iris + " data inspect '" + (dir / "c").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cholecseg8k video dataset"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Liver"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("problems: none"), std::string::npos) << r.output;
  r = test::run_command(iris + " data convert '" + (dir / "c").string() + "' '" +
                        (dir / "j").string() + "' --to coco");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_command(iris + " data inspect '" + (dir / "j" / "annotations.json").string() +
                        "' --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["layout"], "coco video dataset");
  write_file_atomic(dir / "bad.json", "{\"images\": [], \"annotations\": []}");
  r = test::run_command(iris + " data convert '" + (dir / "bad.json").string() + "' '" +
                        (dir / "x").string() + "' --to endovis18");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("\"categories\""), std::string::npos) << r.output;
  r = test::run_command(iris + " data synth surgical-video --out '" + (dir / "z").string() +
                        "' --size 64");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace iris
