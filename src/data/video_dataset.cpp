#include "data/video_dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/image_io.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// CholecSeg8k (Hong et al. 2020): class index, name, watershed grey value, colour-mask colour.
// The Kaggle page writes the grey values as "#505050", i.e. decimal 50 in each channel, not hex.
struct CholecRow {
  const char* name;
  int code;
  std::array<uint8_t, 3> color;
};
constexpr CholecRow kCholec[] = {
    {"Black Background", 50, {127, 127, 127}},
    {"Abdominal Wall", 11, {210, 140, 140}},
    {"Liver", 21, {255, 114, 114}},
    {"Gastrointestinal Tract", 13, {231, 70, 156}},
    {"Fat", 12, {186, 183, 75}},
    {"Grasper", 31, {170, 255, 0}},
    {"Connective Tissue", 23, {255, 85, 0}},
    {"Blood", 24, {255, 0, 0}},
    {"Cystic Duct", 25, {255, 255, 0}},
    {"L-hook Electrocautery", 32, {169, 255, 184}},
    {"Gallbladder", 22, {255, 160, 165}},
    {"Hepatic Vein", 33, {0, 50, 128}},
    {"Liver Ligament", 5, {111, 74, 0}},
};
// Watershed values that mean "not annotated": 0 (missed pixels) and 255 (1-pixel region edges).
constexpr int kCholecUnannotated[] = {0, 255};

// EndoVis17 instrument types, in the order of the challenge's type labels.
constexpr const char* kEndoVis17Types[] = {"Bipolar_Forceps",
                                           "Prograsp_Forceps",
                                           "Large_Needle_Driver",
                                           "Vessel_Sealer",
                                           "Grasping_Retractor",
                                           "Monopolar_Curved_Scissors",
                                           "Other"};

// EndoVis18 labels.json: classid, name, colour.
struct EndoVis18Row {
  const char* name;
  std::array<uint8_t, 3> color;
};
constexpr EndoVis18Row kEndoVis18[] = {
    {"background-tissue", {0, 0, 0}},
    {"instrument-shaft", {0, 255, 0}},
    {"instrument-clasper", {0, 255, 255}},
    {"instrument-wrist", {125, 255, 12}},
    {"kidney-parenchyma", {255, 55, 0}},
    {"covered-kidney", {24, 55, 125}},
    {"thread", {187, 155, 25}},
    {"clamps", {0, 255, 125}},
    {"suturing-needle", {255, 255, 125}},
    {"suction-instrument", {123, 15, 175}},
    {"small-intestine", {124, 155, 5}},
    {"ultrasound-probe", {12, 255, 141}},
};

std::string normalise_name(const std::string& name) {
  std::string out;
  for (const char c : name) {
    if (c == '-' || c == '_' || c == ' ') continue;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::vector<fs::path> sorted_subdirs(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return natural_less(a.filename().string(), b.filename().string());
  });
  return out;
}

std::string rel(const VideoDataset& ds, const fs::path& p) {
  std::error_code ec;
  const auto r = fs::relative(p, ds.root, ec);
  return ec || r.empty() ? p.string() : r.string();
}

void sort_videos(VideoDataset& ds) {
  std::stable_sort(ds.videos.begin(), ds.videos.end(),
                   [](const Video& a, const Video& b) { return natural_less(a.id, b.id); });
}

// --- CholecSeg8k ------------------------------------------------------------------------------

const std::regex kCholecFrame(R"(frame_(\d+)_endo\.png)");
const std::regex kCholecMask(R"(frame_(\d+)_endo_watershed_mask\.png)");

bool is_cholec_clip(const fs::path& dir) {
  if (!fs::is_directory(dir)) return false;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (std::regex_match(e.path().filename().string(), kCholecFrame)) return true;
  }
  return false;
}

std::vector<fs::path> cholec_clips(const fs::path& root) {
  if (is_cholec_clip(root)) return {root};
  std::vector<fs::path> clips;
  for (const auto& d : sorted_subdirs(root)) {
    if (is_cholec_clip(d)) {
      clips.push_back(d);
      continue;
    }
    for (const auto& c : sorted_subdirs(d)) {
      if (is_cholec_clip(c)) clips.push_back(c);
    }
  }
  return clips;
}

// --- EndoVis ----------------------------------------------------------------------------------

const std::regex kEndoVisFrame(R"(frame(\d+)\.(png|jpg|jpeg))", std::regex::icase);

std::vector<fs::path> endovis_sequences(const fs::path& root, const std::string& prefix) {
  if (fs::is_directory(root / "left_frames")) return {root};
  std::vector<fs::path> out;
  for (const auto& d : sorted_subdirs(root)) {
    if (d.filename().string().rfind(prefix, 0) == 0 && fs::is_directory(d / "left_frames")) {
      out.push_back(d);
    }
  }
  return out;
}

// Frames of left_frames/, by frame number.
std::vector<std::pair<int64_t, fs::path>> endovis_frames(const fs::path& seq) {
  std::vector<std::pair<int64_t, fs::path>> frames;
  for (const auto& p : list_frames(seq / "left_frames")) {
    std::smatch m;
    const std::string name = p.filename().string();
    if (std::regex_match(name, m, kEndoVisFrame)) frames.emplace_back(std::stoll(m[1]), p);
  }
  return frames;
}

// The names in `dir` that `used` does not hold: masks without a frame.
void report_orphans(VideoDataset& ds, const fs::path& dir, const std::set<std::string>& used) {
  if (!fs::is_directory(dir)) return;
  for (const auto& p : list_frames(dir)) {
    if (!used.count(p.filename().string())) {
      ds.problems.push_back(file_message(rel(ds, p), "mask without a frame in left_frames"));
    }
  }
}

// --- label decoding ---------------------------------------------------------------------------

void check_mask_size(const fs::path& mask, const at::Tensor& m, const VideoFrame& frame) {
  int64_t h = frame.height;
  int64_t w = frame.width;
  if (h == 0 || w == 0) {
    const ImageSize s = read_image_size(frame.image);
    h = s.height;
    w = s.width;
  }
  if (m.size(0) != h || m.size(1) != w) {
    throw InputError(file_message(
        mask.string(), fmt::format("mask is {}x{} but its frame {} is {}x{} (WxH)", m.size(1),
                                   m.size(0), frame.image.filename().string(), w, h)));
  }
}

// [H, W] single channel from a label file that may be stored as grey or grey-as-RGB.
at::Tensor grey_channel(const fs::path& path, const at::Tensor& raw, const char* what) {
  if (raw.dim() == 2) return raw;
  const auto rgb = raw.narrow(2, 0, std::min<int64_t>(3, raw.size(2)));
  if (rgb.size(2) == 3 &&
      (!rgb.select(2, 0).equal(rgb.select(2, 1)) || !rgb.select(2, 0).equal(rgb.select(2, 2)))) {
    throw InputError(file_message(path.string(), fmt::format("{} has differing colour channels; "
                                                             "a colour mask, not a {}",
                                                             what, what)));
  }
  return rgb.select(2, 0).contiguous();
}

at::Tensor decode_cholec(const VideoDataset& ds, const VideoFrame& frame) {
  if (frame.label_map.empty()) {
    throw InputError(file_message(frame.image.string(), "frame has no watershed mask"));
  }
  const auto raw = read_image_raw(frame.label_map);
  const auto grey = grey_channel(frame.label_map, raw, "watershed mask").to(at::kLong);
  check_mask_size(frame.label_map, grey, frame);
  std::vector<int64_t> lut(65536, -2);
  for (const int v : kCholecUnannotated) lut[v] = kUnlabelled;
  for (const auto& c : ds.classes) {
    if (c.code >= 0) lut[c.code] = c.value;
  }
  const auto lut_t = at::tensor(lut, at::kLong);
  const auto labels = lut_t.index_select(0, grey.reshape({-1})).reshape(grey.sizes());
  const auto unknown = labels == -2;
  if (unknown.any().item<bool>()) {
    const auto values = std::get<0>(at::_unique(grey.masked_select(unknown)));
    std::vector<int64_t> v(values.data_ptr<int64_t>(), values.data_ptr<int64_t>() + values.numel());
    throw InputError(
        file_message(frame.label_map.string(),
                     fmt::format("{} pixels with grey values not in the CholecSeg8k table: {}",
                                 unknown.sum().item<int64_t>(), fmt::join(v, ", "))));
  }
  return labels;
}

at::Tensor decode_colour_labels(const VideoDataset& ds, const VideoFrame& frame) {
  if (frame.label_map.empty()) {
    throw InputError(file_message(frame.image.string(), "frame has no label file"));
  }
  const auto raw = read_image_raw(frame.label_map);
  if (raw.dim() != 3 || raw.size(2) < 3) {
    throw InputError(
        file_message(frame.label_map.string(),
                     "expected colour-coded labels (RGB), got a single-channel image"));
  }
  check_mask_size(frame.label_map, raw, frame);
  const auto c = raw.narrow(2, 0, 3).to(at::kLong);
  const auto key = c.select(2, 0) * 65536 + c.select(2, 1) * 256 + c.select(2, 2);
  auto labels = at::full(key.sizes(), kUnlabelled, at::kLong);
  for (const auto& cls : ds.classes) {
    const int64_t k = cls.color[0] * 65536 + cls.color[1] * 256 + cls.color[2];
    labels.masked_fill_(key == k, cls.value);
  }
  const auto unknown = labels == kUnlabelled;
  if (unknown.any().item<bool>()) {
    auto [keys, inverse, counts] = at::_unique2(key.masked_select(unknown), true, false, true);
    std::vector<std::string> listed;
    for (int64_t i = 0; i < std::min<int64_t>(3, keys.numel()); ++i) {
      const int64_t k = keys[i].item<int64_t>();
      listed.push_back(fmt::format("({},{},{}) x{}", k >> 16, (k >> 8) & 255, k & 255,
                                   counts[i].item<int64_t>()));
    }
    throw InputError(
        file_message(frame.label_map.string(),
                     fmt::format("{} pixels of {} colour{} not in the {} class table: {}{}",
                                 unknown.sum().item<int64_t>(), keys.numel(),
                                 keys.numel() == 1 ? "" : "s", layout_name(ds.layout),
                                 fmt::join(listed, ", "), keys.numel() > 3 ? ", ..." : "")));
  }
  return labels;
}

at::Tensor load_endovis17_object(const FrameObject& o, const VideoFrame& frame) {
  const auto raw = read_image_raw(o.mask);
  const auto m = grey_channel(o.mask, raw, "instrument mask");
  check_mask_size(o.mask, m, frame);
  return m.clamp(0, 255).to(at::kByte);
}

at::Tensor decode_rle_object(const FrameObject& o, const VideoFrame& frame) {
  if (o.rle->height != frame.height || o.rle->width != frame.width) {
    throw InputError(fmt::format("{}: mask is {}x{} but its image is {}x{} (WxH)", o.where,
                                 o.rle->width, o.rle->height, frame.width, frame.height));
  }
  return rle_decode(*o.rle);
}

// --- COCO -------------------------------------------------------------------------------------

const json& field(const json& obj, const char* name, const std::string& where) {
  if (!obj.is_object()) throw InputError(where + ": expected an object");
  const auto it = obj.find(name);
  if (it == obj.end()) throw InputError(fmt::format("{}: missing field \"{}\"", where, name));
  return *it;
}

int64_t int_field(const json& obj, const char* name, const std::string& where) {
  const json& v = field(obj, name, where);
  if (!v.is_number_integer()) {
    throw InputError(fmt::format("{}: field \"{}\" must be an integer", where, name));
  }
  return v.get<int64_t>();
}

std::string string_field(const json& obj, const char* name, const std::string& where) {
  const json& v = field(obj, name, where);
  if (!v.is_string())
    throw InputError(fmt::format("{}: field \"{}\" must be a string", where, name));
  return v.get<std::string>();
}

const json& array_field(const json& obj, const char* name, const std::string& where) {
  const json& v = field(obj, name, where);
  if (!v.is_array()) throw InputError(fmt::format("{}: field \"{}\" must be a list", where, name));
  return v;
}

std::string json_path(const fs::path& p) {
  return p.lexically_normal().string();
}

}  // namespace

// --- public: names, tables, detection ----------------------------------------------------------

std::string layout_name(VideoLayout layout) {
  switch (layout) {
    case VideoLayout::kCholecSeg8k:
      return "cholecseg8k";
    case VideoLayout::kEndoVis17:
      return "endovis17";
    case VideoLayout::kEndoVis18:
      return "endovis18";
    case VideoLayout::kCocoVideo:
      return "coco";
  }
  return "?";
}

VideoLayout parse_video_layout(const std::string& name) {
  for (const auto l : {VideoLayout::kCholecSeg8k, VideoLayout::kEndoVis17, VideoLayout::kEndoVis18,
                       VideoLayout::kCocoVideo}) {
    if (normalise_name(name) == layout_name(l)) return l;
  }
  throw InputError("unknown layout '" + name +
                   "'; expected cholecseg8k, endovis17, endovis18 or coco");
}

const VideoClass* VideoDataset::find_class(int64_t value) const {
  for (const auto& c : classes) {
    if (c.value == value) return &c;
  }
  return nullptr;
}

int64_t VideoDataset::frame_count() const {
  int64_t n = 0;
  for (const auto& v : videos) n += static_cast<int64_t>(v.frames.size());
  return n;
}

std::vector<VideoClass> cholecseg8k_classes() {
  std::vector<VideoClass> out;
  int64_t i = 0;
  for (const auto& r : kCholec) out.push_back({i++, r.name, r.code, r.color, false});
  return out;
}

std::vector<VideoClass> endovis17_classes() {
  std::vector<VideoClass> out{{0, "background", -1, {0, 0, 0}, true}};
  int64_t i = 1;
  for (const char* name : kEndoVis17Types) {
    out.push_back({i,
                   name,
                   -1,
                   {static_cast<uint8_t>(37 * i % 256), static_cast<uint8_t>(255 - 29 * i),
                    static_cast<uint8_t>(80 + 21 * i)},
                   false});
    ++i;
  }
  return out;
}

std::vector<VideoClass> endovis18_classes() {
  std::vector<VideoClass> out;
  int64_t i = 0;
  for (const auto& r : kEndoVis18) {
    out.push_back({i, r.name, -1, r.color, i == 0});
    ++i;
  }
  return out;
}

std::optional<int64_t> endovis17_instrument_class(const std::string& folder_name) {
  // Specific names first: "Other" must not match inside a longer instrument name.
  for (int64_t i = 0; i < 6; ++i) {
    if (folder_name.find(kEndoVis17Types[i]) != std::string::npos) return i + 1;
  }
  if (folder_name.rfind("Other", 0) == 0 || folder_name.find("_Other") != std::string::npos)
    return 7;
  return std::nullopt;
}

std::optional<VideoLayout> detect_video_layout(const fs::path& path) {
  if (fs::is_regular_file(path)) {
    if (path.extension() == ".json") return VideoLayout::kCocoVideo;
    return std::nullopt;
  }
  if (!fs::is_directory(path)) return std::nullopt;
  if (fs::is_regular_file(path / "annotations.json")) return VideoLayout::kCocoVideo;
  if (!endovis_sequences(path, "instrument_dataset").empty() &&
      (fs::is_directory(path / "ground_truth") ||
       fs::is_directory(endovis_sequences(path, "instrument_dataset").front() / "ground_truth"))) {
    return VideoLayout::kEndoVis17;
  }
  const auto seqs = endovis_sequences(path, "seq");
  if (!seqs.empty() && fs::is_directory(seqs.front() / "labels")) return VideoLayout::kEndoVis18;
  if (!sorted_subdirs(path).empty() || is_cholec_clip(path)) {
    if (!cholec_clips(path).empty()) return VideoLayout::kCholecSeg8k;
  }
  return std::nullopt;
}

VideoDataset read_video_dataset(const fs::path& path) {
  if (!fs::exists(path)) throw InputError(file_message(path.string(), "no such file or folder"));
  const auto layout = detect_video_layout(path);
  if (!layout) {
    throw InputError(file_message(path.string(),
                                  "not a CholecSeg8k, EndoVis17, EndoVis18 or "
                                  "COCO-video dataset"));
  }
  switch (*layout) {
    case VideoLayout::kCholecSeg8k:
      return read_cholecseg8k(path);
    case VideoLayout::kEndoVis17:
      return read_endovis17(path);
    case VideoLayout::kEndoVis18:
      return read_endovis18(path);
    case VideoLayout::kCocoVideo:
      return read_coco_video(path);
  }
  throw InputError("unreachable layout");
}

// --- readers -----------------------------------------------------------------------------------

VideoDataset read_cholecseg8k(const fs::path& root) {
  VideoDataset ds;
  ds.layout = VideoLayout::kCholecSeg8k;
  ds.root = root;
  ds.classes = cholecseg8k_classes();
  for (const auto& clip : cholec_clips(root)) {
    Video video;
    video.id = clip.filename().string();
    std::vector<std::pair<int64_t, fs::path>> frames;
    std::set<int64_t> masks;
    for (const auto& e : fs::directory_iterator(clip)) {
      const std::string name = e.path().filename().string();
      std::smatch m;
      if (std::regex_match(name, m, kCholecFrame)) frames.emplace_back(std::stoll(m[1]), e.path());
      if (std::regex_match(name, m, kCholecMask)) masks.insert(std::stoll(m[1]));
    }
    std::sort(frames.begin(), frames.end());
    for (const auto& [n, image] : frames) {
      VideoFrame f;
      f.image = image;
      f.index = static_cast<int64_t>(video.frames.size());
      const fs::path mask = clip / fmt::format("frame_{}_endo_watershed_mask.png", n);
      if (masks.count(n)) {
        f.label_map = mask;
      } else {
        ds.problems.push_back(
            file_message(rel(ds, image), "no watershed mask " + mask.filename().string()));
      }
      video.frames.push_back(std::move(f));
    }
    for (const int64_t n : masks) {
      if (!std::any_of(frames.begin(), frames.end(), [n](const auto& f) { return f.first == n; })) {
        ds.problems.push_back(
            file_message(rel(ds, clip / fmt::format("frame_{}_endo_watershed_mask.png", n)),
                         fmt::format("mask without a frame (frame_{}_endo.png)", n)));
      }
    }
    ds.videos.push_back(std::move(video));
  }
  if (ds.videos.empty()) ds.problems.push_back(file_message(root.string(), "no CholecSeg8k clips"));
  sort_videos(ds);
  return ds;
}

VideoDataset read_endovis17(const fs::path& root) {
  VideoDataset ds;
  ds.layout = VideoLayout::kEndoVis17;
  ds.root = root;
  ds.classes = endovis17_classes();
  for (const auto& seq : endovis_sequences(root, "instrument_dataset")) {
    Video video;
    video.id = seq.filename().string();
    const fs::path gt = seq / "ground_truth";
    std::vector<std::pair<std::string, int64_t>> instruments;  // folder, class
    if (!fs::is_directory(gt)) {
      ds.problems.push_back(file_message(rel(ds, seq), "no ground_truth folder"));
    }
    for (const auto& d : sorted_subdirs(gt)) {
      const std::string name = d.filename().string();
      const auto cls = endovis17_instrument_class(name);
      if (!cls) {
        ds.problems.push_back(file_message(rel(ds, d),
                                           "unknown instrument type (expected one of "
                                           "the 7 EndoVis17 types in the folder name)"));
        continue;
      }
      instruments.emplace_back(name, *cls);
    }
    std::map<std::string, std::set<std::string>> used;
    for (const auto& [n, image] : endovis_frames(seq)) {
      VideoFrame f;
      f.image = image;
      f.index = static_cast<int64_t>(video.frames.size());
      for (const auto& [folder, cls] : instruments) {
        const fs::path mask = gt / folder / image.filename();
        used[folder].insert(image.filename().string());
        if (!fs::exists(mask)) {
          ds.problems.push_back(file_message(rel(ds, mask), "missing mask for " + rel(ds, image)));
          continue;
        }
        FrameObject o;
        o.class_value = cls;
        o.name = folder.substr(
            0, folder.size() - (folder.size() > 7 && folder.ends_with("_labels") ? 7 : 0));
        o.mask = mask;
        o.where = mask.string();
        f.objects.push_back(std::move(o));
      }
      video.frames.push_back(std::move(f));
    }
    for (const auto& [folder, cls] : instruments) report_orphans(ds, gt / folder, used[folder]);
    ds.videos.push_back(std::move(video));
  }
  if (ds.videos.empty())
    ds.problems.push_back(file_message(root.string(), "no instrument_dataset_K folders"));
  sort_videos(ds);
  return ds;
}

VideoDataset read_endovis18(const fs::path& root) {
  VideoDataset ds;
  ds.layout = VideoLayout::kEndoVis18;
  ds.root = root;
  ds.classes = endovis18_classes();
  for (const auto& seq : endovis_sequences(root, "seq")) {
    Video video;
    video.id = seq.filename().string();
    std::set<std::string> used;
    for (const auto& [n, image] : endovis_frames(seq)) {
      VideoFrame f;
      f.image = image;
      f.index = static_cast<int64_t>(video.frames.size());
      const fs::path label = seq / "labels" / image.filename();
      used.insert(image.filename().string());
      if (fs::exists(label)) {
        f.label_map = label;
      } else {
        ds.problems.push_back(
            file_message(rel(ds, image), "no label file labels/" + image.filename().string()));
      }
      video.frames.push_back(std::move(f));
    }
    report_orphans(ds, seq / "labels", used);
    ds.videos.push_back(std::move(video));
  }
  if (ds.videos.empty()) ds.problems.push_back(file_message(root.string(), "no seq_K folders"));
  sort_videos(ds);
  return ds;
}

VideoDataset read_coco_video(const fs::path& path) {
  const fs::path file = fs::is_directory(path) ? path / "annotations.json" : path;
  const std::string name = file.string();
  json doc;
  try {
    doc = json::parse(read_file(file));
  } catch (const json::exception& e) {
    throw InputError(file_message(name, std::string("not valid JSON: ") + e.what()));
  }
  VideoDataset ds;
  ds.layout = VideoLayout::kCocoVideo;
  ds.root = file.parent_path();
  const json& images = array_field(doc, "images", name);
  const json& annotations = array_field(doc, "annotations", name);
  const json& categories = array_field(doc, "categories", name);

  for (std::size_t i = 0; i < categories.size(); ++i) {
    const std::string where = fmt::format("{}: categories[{}]", name, i);
    VideoClass c;
    c.value = int_field(categories[i], "id", where);
    c.name = string_field(categories[i], "name", where);
    c.color = {static_cast<uint8_t>(50 + 67 * i % 206), static_cast<uint8_t>(255 - 41 * i % 200),
               static_cast<uint8_t>(90 + 23 * i % 166)};
    ds.classes.push_back(std::move(c));
  }

  std::map<std::string, Video> videos;
  std::map<int64_t, std::pair<std::string, std::size_t>> by_id;  // image id -> video, position
  for (std::size_t i = 0; i < images.size(); ++i) {
    const std::string where = fmt::format("{}: images[{}]", name, i);
    const json& im = images[i];
    const int64_t id = int_field(im, "id", where);
    const json& vid = field(im, "video_id", where);
    if (!vid.is_string() && !vid.is_number_integer()) {
      throw InputError(where + ": field \"video_id\" must be a string or an integer");
    }
    const std::string video_id =
        vid.is_string() ? vid.get<std::string>() : std::to_string(vid.get<int64_t>());
    VideoFrame f;
    f.index = int_field(im, "order_in_video", where);
    f.height = int_field(im, "height", where);
    f.width = int_field(im, "width", where);
    const std::string file_name = string_field(im, "file_name", where);
    // file_name relative to the JSON; the fine-tuning tools load from the absolute "path".
    f.image = ds.root / file_name;
    if (!fs::exists(f.image) && im.contains("path") && im["path"].is_string() &&
        fs::exists(im["path"].get<std::string>())) {
      f.image = im["path"].get<std::string>();
    }
    if (!fs::exists(f.image)) {
      ds.problems.push_back(fmt::format("{}: image file {} not found", where, file_name));
    }
    if (by_id.count(id)) ds.problems.push_back(fmt::format("{}: duplicate image id {}", where, id));
    Video& v = videos[video_id];
    v.id = video_id;
    by_id[id] = {video_id, v.frames.size()};
    v.frames.push_back(std::move(f));
  }

  for (std::size_t i = 0; i < annotations.size(); ++i) {
    const std::string where = fmt::format("{}: annotations[{}]", name, i);
    const json& a = annotations[i];
    const int64_t image_id = int_field(a, "image_id", where);
    const int64_t category = int_field(a, "category_id", where);
    const json& seg = field(a, "segmentation", where);
    if (seg.is_array()) {
      throw InputError(where + ": polygon segmentation; expected RLE {\"size\", \"counts\"}");
    }
    FrameObject o;
    o.class_value = category;
    o.where = where;
    o.rle = rle_from_json(seg, where + ".segmentation");
    const auto it = by_id.find(image_id);
    if (it == by_id.end()) {
      ds.problems.push_back(fmt::format("{}: image_id {} is not in images", where, image_id));
      continue;
    }
    const VideoClass* cls = ds.find_class(category);
    if (!cls) {
      ds.problems.push_back(
          fmt::format("{}: category_id {} is not in categories", where, category));
      continue;
    }
    o.name = cls->name;
    VideoFrame& f = videos[it->second.first].frames[it->second.second];
    if (o.rle->height != f.height || o.rle->width != f.width) {
      ds.problems.push_back(fmt::format("{}: mask is {}x{} but image {} is {}x{} (WxH)", where,
                                        o.rle->width, o.rle->height, image_id, f.width, f.height));
    }
    f.objects.push_back(std::move(o));
  }

  for (auto& [id, v] : videos) {
    std::stable_sort(v.frames.begin(), v.frames.end(),
                     [](const VideoFrame& a, const VideoFrame& b) { return a.index < b.index; });
    for (std::size_t k = 0; k < v.frames.size(); ++k) {
      if (v.frames[k].index != static_cast<int64_t>(k)) {
        ds.problems.push_back(
            fmt::format("{}: video {}: order_in_video is not 0, 1, 2, ... "
                        "(position {} has {})",
                        name, id, k, v.frames[k].index));
        break;
      }
    }
    ds.videos.push_back(std::move(v));
  }
  sort_videos(ds);
  return ds;
}

// --- loading -----------------------------------------------------------------------------------

at::Tensor load_frame_image(const VideoFrame& frame) {
  return read_image_rgb(frame.image);
}

at::Tensor load_label_map(const VideoDataset& ds, const VideoFrame& frame) {
  switch (ds.layout) {
    case VideoLayout::kCholecSeg8k:
      return decode_cholec(ds, frame);
    case VideoLayout::kEndoVis18:
      return decode_colour_labels(ds, frame);
    case VideoLayout::kEndoVis17:
    case VideoLayout::kCocoVideo: {
      at::Tensor labels;
      for (const auto& o : frame.objects) {
        const auto m = ds.layout == VideoLayout::kEndoVis17 ? load_endovis17_object(o, frame)
                                                            : decode_rle_object(o, frame);
        if (!labels.defined()) {
          labels = at::full({m.size(0), m.size(1)},
                            ds.layout == VideoLayout::kEndoVis17 ? 0 : kUnlabelled, at::kLong);
        }
        labels.masked_fill_(m != 0, o.class_value);
      }
      if (!labels.defined()) {
        int64_t h = frame.height;
        int64_t w = frame.width;
        if (h == 0 || w == 0) {
          const ImageSize s = read_image_size(frame.image);
          h = s.height;
          w = s.width;
        }
        labels =
            at::full({h, w}, ds.layout == VideoLayout::kEndoVis17 ? 0 : kUnlabelled, at::kLong);
      }
      return labels;
    }
  }
  throw InputError("unreachable layout");
}

std::vector<ObjectMask> load_object_masks(const VideoDataset& ds, const VideoFrame& frame) {
  std::vector<ObjectMask> out;
  if (ds.layout == VideoLayout::kEndoVis17 || ds.layout == VideoLayout::kCocoVideo) {
    for (const auto& o : frame.objects) {
      out.push_back({o.class_value, o.name,
                     ds.layout == VideoLayout::kEndoVis17 ? load_endovis17_object(o, frame)
                                                          : decode_rle_object(o, frame)});
    }
    return out;
  }
  const auto labels = load_label_map(ds, frame);
  for (const auto& c : ds.classes) {
    if (c.background) continue;
    const auto m = labels == c.value;
    if (m.any().item<bool>()) out.push_back({c.value, c.name, m.to(at::kByte)});
  }
  return out;
}

VideoDatasetScan scan_video_dataset(const VideoDataset& ds) {
  VideoDatasetScan scan;
  scan.problems = ds.problems;
  for (const auto& v : ds.videos) {
    for (const auto& f : v.frames) {
      try {
        const ImageSize s = read_image_size(f.image);
        ++scan.sizes[{s.width, s.height}];
        if (ds.layout == VideoLayout::kCocoVideo && (s.height != f.height || s.width != f.width)) {
          scan.problems.push_back(file_message(
              f.image.string(), fmt::format("image is {}x{} but the JSON says {}x{} (WxH)", s.width,
                                            s.height, f.width, f.height)));
          continue;
        }
      } catch (const InputError& e) {
        scan.problems.push_back(e.what());
        continue;
      }
      if (f.label_map.empty() && f.objects.empty() && ds.layout != VideoLayout::kCocoVideo)
        continue;
      try {
        const auto labels = load_label_map(ds, f);
        const auto counts = at::bincount(labels.reshape({-1}) + 1);
        const auto* c = counts.data_ptr<int64_t>();
        scan.unlabelled += c[0];
        for (int64_t k = 1; k < counts.numel(); ++k) {
          if (c[k] > 0) scan.pixels[k - 1] += c[k];
        }
      } catch (const InputError& e) {
        scan.problems.push_back(e.what());
      }
    }
  }
  return scan;
}

// --- writing -----------------------------------------------------------------------------------

VideoLayoutWriter::VideoLayoutWriter(VideoLayout layout, fs::path out,
                                     std::vector<VideoClass> classes)
    : layout_(layout), out_(std::move(out)), classes_(std::move(classes)) {
  fs::create_directories(out_);
}

namespace {

// "<prefix>(\d+)<anything>" -> the number, or the position of the video among those seen.
int64_t video_number(std::map<std::string, int64_t>& seen, const std::string& id,
                     const std::regex& pattern) {
  const auto it = seen.find(id);
  if (it != seen.end()) return it->second;
  std::smatch m;
  int64_t n = static_cast<int64_t>(seen.size()) + 1;
  if (std::regex_search(id, m, pattern)) n = std::stoll(m[1]);
  seen[id] = n;
  return n;
}

void write_frame_image(const fs::path& target, const at::Tensor& image, const fs::path& source) {
  if (!source.empty() && source.extension() == target.extension()) {
    write_file_atomic(target, read_file(source));
  } else {
    write_image(target, image.defined() ? image : read_image_rgb(source));
  }
}

}  // namespace

void VideoLayoutWriter::add_frame(const std::string& video_id, int64_t index,
                                  const at::Tensor& image, const at::Tensor& label_map,
                                  const std::vector<ObjectMask>& objects,
                                  const fs::path& source_image) {
  const auto class_of = [&](int64_t value) -> const VideoClass& {
    for (const auto& c : classes_) {
      if (c.value == value) return c;
    }
    throw InputError(
        fmt::format("class value {} is not in the {} class table", value, layout_name(layout_)));
  };
  switch (layout_) {
    case VideoLayout::kCholecSeg8k: {
      static const std::regex clip(R"(^video(\d+)_(\d+)$)");
      std::smatch m;
      int64_t number = 0;
      int64_t start = 0;
      if (std::regex_match(video_id, m, clip)) {
        number = std::stoll(m[1]);
        start = std::stoll(m[2]);
        video_numbers_[video_id] = number;
      } else {
        number = video_number(video_numbers_, video_id, std::regex("$^"));
      }
      int64_t n = start + index;
      static const std::regex named(R"(frame_(\d+)_endo)");
      const std::string stem = source_image.filename().string();
      if (std::regex_search(stem, m, named)) n = std::stoll(m[1]);
      const fs::path dir = out_ / fmt::format("video{:02d}", number) /
                           fmt::format("video{:02d}_{:05d}", number, start);
      write_frame_image(dir / fmt::format("frame_{}_endo.png", n), image, source_image);
      std::vector<int64_t> lut(1 + 256, 0);  // label value + 1 -> grey; unlabelled -> 0
      for (const auto& c : classes_) {
        TORCH_CHECK(c.value >= 0 && c.value < 256 && c.code >= 0, "CholecSeg8k classes need codes");
        lut[c.value + 1] = c.code;
      }
      const auto present = std::get<0>(at::_unique(label_map.reshape({-1})));
      for (int64_t i = 0; i < present.numel(); ++i) {
        if (present[i].item<int64_t>() != kUnlabelled) class_of(present[i].item<int64_t>());
      }
      const auto grey = at::tensor(lut, at::kLong)
                            .index_select(0, (label_map.reshape({-1}) + 1))
                            .reshape(label_map.sizes())
                            .to(at::kByte);
      // Stored as grey-as-RGB like the released masks.
      write_image(dir / fmt::format("frame_{}_endo_watershed_mask.png", n),
                  grey.unsqueeze(2).expand({-1, -1, 3}).contiguous());
      break;
    }
    case VideoLayout::kEndoVis18: {
      const int64_t k = video_number(video_numbers_, video_id, std::regex(R"(seq_(\d+))"));
      const fs::path dir = out_ / fmt::format("seq_{}", k);
      const std::string name = fmt::format("frame{:03d}.png", index);
      write_frame_image(dir / "left_frames" / name, image, source_image);
      auto rgb = at::zeros({label_map.size(0), label_map.size(1), 3}, at::kByte);
      const auto present = std::get<0>(at::_unique(label_map.reshape({-1})));
      for (int64_t i = 0; i < present.numel(); ++i) class_of(present[i].item<int64_t>());
      for (const auto& c : classes_) {
        const auto m = (label_map == c.value).unsqueeze(2);
        const auto colour =
            at::tensor(std::vector<int64_t>{c.color[0], c.color[1], c.color[2]}, at::kLong)
                .to(at::kByte);
        rgb = at::where(m, colour.view({1, 1, 3}), rgb);
      }
      write_image(dir / "labels" / name, rgb);
      break;
    }
    case VideoLayout::kEndoVis17: {
      const int64_t k =
          video_number(video_numbers_, video_id, std::regex(R"(instrument_dataset_(\d+))"));
      const fs::path dir = out_ / fmt::format("instrument_dataset_{}", k);
      const std::string name = fmt::format("frame{:03d}.png", index);
      write_frame_image(dir / "left_frames" / name, image, source_image);
      for (const auto& o : objects) {
        class_of(o.class_value);
        write_image(dir / "ground_truth" / (o.name + "_labels") / name, o.mask.to(at::kByte));
      }
      break;
    }
    case VideoLayout::kCocoVideo: {
      const std::string file_name = source_image.empty() ? fmt::format("{:05d}.png", index)
                                                         : source_image.filename().string();
      const fs::path target = out_ / "images" / video_id / file_name;
      write_frame_image(target, image, source_image);
      const ImageSize size = read_image_size(target);
      const int64_t image_id = frames_;
      json im{{"id", image_id},
              {"file_name", (fs::path("images") / video_id / file_name).string()},
              {"path", json_path(fs::absolute(target))},
              {"height", size.height},
              {"width", size.width},
              {"video_id", video_id},
              {"order_in_video", index},
              {"is_det_keyframe", !objects.empty()}};
      images_json_.push_back(im.dump());
      for (const auto& o : objects) {
        class_of(o.class_value);
        const auto nz = o.mask != 0;
        const Rle rle = rle_encode(nz);
        const auto ys = nz.any(1).nonzero();
        const auto xs = nz.any(0).nonzero();
        std::vector<int64_t> bbox{0, 0, 0, 0};
        if (ys.numel() > 0) {
          const int64_t y0 = ys.min().item<int64_t>();
          const int64_t x0 = xs.min().item<int64_t>();
          bbox = {x0, y0, xs.max().item<int64_t>() - x0 + 1, ys.max().item<int64_t>() - y0 + 1};
        }
        json a{{"id", next_annotation_id_++},
               {"image_id", image_id},
               {"category_id", o.class_value},
               {"segmentation", rle_to_json(rle)},
               {"area", rle.area()},
               {"bbox", bbox},
               {"iscrowd", 0}};
        annotations_json_.push_back(a.dump());
      }
      break;
    }
  }
  ++frames_;
}

void VideoLayoutWriter::finish() {
  if (layout_ != VideoLayout::kCocoVideo) return;
  json cats = json::array();
  for (const auto& c : classes_) {
    if (!c.background) cats.push_back({{"id", c.value}, {"name", c.name}});
  }
  std::string out = "{\n\"images\": [\n";
  for (std::size_t i = 0; i < images_json_.size(); ++i) {
    out += images_json_[i] + (i + 1 < images_json_.size() ? ",\n" : "\n");
  }
  out += "],\n\"annotations\": [\n";
  for (std::size_t i = 0; i < annotations_json_.size(); ++i) {
    out += annotations_json_[i] + (i + 1 < annotations_json_.size() ? ",\n" : "\n");
  }
  out += "],\n\"categories\": " + cats.dump() + "\n}\n";
  write_file_atomic(out_ / "annotations.json", out);
}

int64_t convert_video_dataset(const fs::path& in, const fs::path& out, VideoLayout to) {
  const VideoDataset ds = read_video_dataset(in);
  if (to == VideoLayout::kEndoVis17) {
    throw InputError(
        "convert writes coco, cholecseg8k or endovis18 (EndoVis17 holds instrument "
        "masks that the other layouts do not describe)");
  }
  if (!ds.problems.empty()) {
    throw InputError(
        fmt::format("{}: {} problem(s) in the input, first: {} (see iris data inspect)",
                    in.string(), ds.problems.size(), ds.problems.front()));
  }
  if (to == VideoLayout::kCocoVideo) {
    VideoLayoutWriter writer(to, out, ds.classes);
    for (const auto& v : ds.videos) {
      for (const auto& f : v.frames) {
        writer.add_frame(v.id, f.index, {}, {}, load_object_masks(ds, f), f.image);
      }
    }
    writer.finish();
    return writer.frames_written();
  }
  // Label maps carried over by class name; background onto background.
  const auto target = to == VideoLayout::kCholecSeg8k ? cholecseg8k_classes() : endovis18_classes();
  const VideoClass* target_background = nullptr;
  for (const auto& c : target) {
    if (c.background) target_background = &c;
  }
  const int64_t unlabelled_to = target_background ? target_background->value : kUnlabelled;
  std::map<int64_t, int64_t> mapping;
  for (const auto& c : ds.classes) {
    const VideoClass* match = nullptr;
    for (const auto& t : target) {
      if (normalise_name(t.name) == normalise_name(c.name)) match = &t;
    }
    if (!match && c.background && target_background) match = target_background;
    if (!match && c.background) {
      mapping[c.value] = kUnlabelled;
      continue;
    }
    if (!match) {
      throw InputError(fmt::format("{}: class '{}' ({}) has no counterpart in the {} class table",
                                   in.string(), c.name, c.value, layout_name(to)));
    }
    mapping[c.value] = match->value;
  }
  VideoLayoutWriter writer(to, out, target);
  for (const auto& v : ds.videos) {
    for (const auto& f : v.frames) {
      const auto labels = load_label_map(ds, f);
      auto mapped = at::full(labels.sizes(), unlabelled_to, at::kLong);
      for (const auto& [from, onto] : mapping) mapped.masked_fill_(labels == from, onto);
      writer.add_frame(v.id, f.index, {}, mapped, {}, f.image);
    }
  }
  writer.finish();
  return writer.frames_written();
}

}  // namespace iris
