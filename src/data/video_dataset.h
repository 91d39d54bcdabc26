// Video segmentation datasets in the layouts they ship in: CholecSeg8k, EndoVis17 (robotic
// instrument segmentation), EndoVis18 (robotic scene segmentation) and the COCO-video JSON of the
// SAM2 surgical fine-tuning tools, read into one in-memory description. Reading walks the tree and
// collects every structural problem; pixels are decoded only when a frame is loaded.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/rle.h"

namespace iris {

enum class VideoLayout { kCholecSeg8k, kEndoVis17, kEndoVis18, kCocoVideo };

std::string layout_name(VideoLayout layout);  // "cholecseg8k", "endovis17", "endovis18", "coco"
// Accepts the names above; InputError listing them otherwise.
VideoLayout parse_video_layout(const std::string& name);

// Value of label-map pixels that no class covers (CholecSeg8k's unannotated 0 and 255 edges,
// COCO pixels without an annotation).
inline constexpr int64_t kUnlabelled = -1;

struct VideoClass {
  int64_t value = 0;  // value in label maps from load_label_map; the COCO category id
  std::string name;
  int64_t code = -1;               // CholecSeg8k: watershed grey value; -1 where unused
  std::array<uint8_t, 3> color{};  // EndoVis18: label colour (RGB); a display colour elsewhere
  bool background = false;         // not exported as a COCO annotation
};

// One annotated object of a frame: an EndoVis17 instrument file (non-zero pixels) or a COCO
// annotation.
struct FrameObject {
  int64_t class_value = 0;
  std::string name;            // EndoVis17: instrument folder without "_labels"
  std::filesystem::path mask;  // EndoVis17
  std::optional<Rle> rle;      // COCO
  std::string where;           // file and field for messages
};

struct VideoFrame {
  std::filesystem::path image;
  int64_t index = 0;                // order in the video, 0-based
  std::filesystem::path label_map;  // CholecSeg8k watershed mask, EndoVis18 colour labels
  std::vector<FrameObject> objects;
  int64_t height = 0;  // stated by COCO; 0 where only the files tell
  int64_t width = 0;
};

struct Video {
  std::string id;  // clip folder ("video01_00080"), "instrument_dataset_3", "seq_2", COCO video_id
  std::vector<VideoFrame> frames;
};

struct VideoDataset {
  VideoLayout layout = VideoLayout::kCocoVideo;
  std::filesystem::path root;
  std::vector<VideoClass> classes;
  std::vector<Video> videos;
  std::vector<std::string> problems;  // found while reading the tree: missing masks, orphans, ...

  const VideoClass* find_class(int64_t value) const;
  int64_t frame_count() const;
};

// The published class tables.
std::vector<VideoClass> cholecseg8k_classes();  // 13 classes 0..12, watershed grey values in `code`
std::vector<VideoClass> endovis17_classes();    // background 0, instrument types 1..7
std::vector<VideoClass> endovis18_classes();    // 12 classes 0..11 with their label colours

// EndoVis17 instrument type from a ground-truth folder name ("Left_Prograsp_Forceps_labels" -> 2).
std::optional<int64_t> endovis17_instrument_class(const std::string& folder_name);

// The layout of a folder or file, if it is one of these.
std::optional<VideoLayout> detect_video_layout(const std::filesystem::path& path);

// Detects and reads; InputError when the layout is not recognised.
VideoDataset read_video_dataset(const std::filesystem::path& path);
VideoDataset read_cholecseg8k(const std::filesystem::path& root);
VideoDataset read_endovis17(const std::filesystem::path& root);
VideoDataset read_endovis18(const std::filesystem::path& root);
// A COCO-video JSON file, or a folder holding annotations.json. Missing or mistyped required
// fields are InputErrors naming the file and the field; missing image files are problems.
VideoDataset read_coco_video(const std::filesystem::path& path);

// [H, W, 3] uint8 RGB.
at::Tensor load_frame_image(const VideoFrame& frame);

// [H, W] int64 class values, kUnlabelled where no class. InputError naming the mask file for a
// mask whose size differs from its frame's, an unknown colour or grey value, or a bad file.
at::Tensor load_label_map(const VideoDataset& dataset, const VideoFrame& frame);

struct ObjectMask {
  int64_t class_value = 0;
  std::string name;
  at::Tensor mask;  // [H, W] uint8, non-zero = object (EndoVis17 part codes are kept)
};
// CholecSeg8k/EndoVis18: one object per non-background class present (semantic); EndoVis17: one
// per instrument file; COCO: one per annotation.
std::vector<ObjectMask> load_object_masks(const VideoDataset& dataset, const VideoFrame& frame);

// Decodes every frame and mask: pixel counts per class, frame sizes, every problem.
struct VideoDatasetScan {
  std::map<int64_t, int64_t> pixels;  // class value -> pixels
  int64_t unlabelled = 0;
  std::map<std::pair<int64_t, int64_t>, int64_t> sizes;  // (width, height) -> frames
  std::vector<std::string> problems;                     // the dataset's own plus the decoded ones
};
VideoDatasetScan scan_video_dataset(const VideoDataset& dataset);

// Writes frames into a layout folder one at a time. CholecSeg8k and EndoVis18 take label maps
// over `classes` (values of their own tables); EndoVis17 and COCO take objects. finish() writes
// the COCO JSON (out/annotations.json, images under out/images/<video>/).
class VideoLayoutWriter {
 public:
  VideoLayoutWriter(VideoLayout layout, std::filesystem::path out, std::vector<VideoClass> classes);

  // image: [H, W, 3] uint8 RGB or the path of an image file to copy. `file_stem` names the
  // frame where the layout keeps names (COCO); layouts with fixed names use `index`.
  void add_frame(const std::string& video_id, int64_t index, const at::Tensor& image,
                 const at::Tensor& label_map, const std::vector<ObjectMask>& objects,
                 const std::filesystem::path& source_image = {});
  void finish();
  int64_t frames_written() const { return frames_; }

 private:
  VideoLayout layout_;
  std::filesystem::path out_;
  std::vector<VideoClass> classes_;
  std::map<std::string, int64_t> video_numbers_;
  int64_t frames_ = 0;
  int64_t next_annotation_id_ = 1;
  std::vector<std::string> images_json_;  // serialised entries, joined by finish()
  std::vector<std::string> annotations_json_;
};

// `iris data convert`: native layouts <-> COCO-video JSON. Classes are matched by name (case,
// '-', '_' and spaces ignored); a class the target table lacks is an InputError. Returns the
// number of frames written.
int64_t convert_video_dataset(const std::filesystem::path& in, const std::filesystem::path& out,
                              VideoLayout to);

}  // namespace iris
