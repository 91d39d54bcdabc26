#include "io/image_io.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>

#include "core/atomic_file.h"
#include "core/build_info.h"
#include "core/error.h"

#if IRIS_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#endif

namespace iris {
namespace {

namespace fs = std::filesystem;

std::string lower_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

#if IRIS_HAVE_OPENCV

// The signature check gives "not a PNG" instead of OpenCV's silent empty result.
void check_signature(const fs::path& path, const std::string& bytes) {
  const std::string ext = lower_extension(path);
  static const char kPng[] = "\x89PNG\r\n\x1a\n";
  if (ext == ".png" && bytes.compare(0, 8, std::string(kPng, 8)) != 0) {
    throw InputError(file_message(path.string(), "not a PNG file (no PNG signature)"));
  }
  if ((ext == ".jpg" || ext == ".jpeg") &&
      (bytes.size() < 3 || static_cast<unsigned char>(bytes[0]) != 0xFF ||
       static_cast<unsigned char>(bytes[1]) != 0xD8)) {
    throw InputError(file_message(path.string(), "not a JPEG file (no JPEG signature)"));
  }
}

cv::Mat decode(const fs::path& path, int flags) {
  if (!fs::is_regular_file(path))
    throw InputError(file_message(path.string(), "no such image file"));
  const std::string bytes = read_file(path);
  check_signature(path, bytes);
  cv::Mat mat;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
    mat = cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    throw InputError(file_message(path.string(), std::string("cannot decode image: ") + e.what()));
  }
  if (mat.empty())
    throw InputError(file_message(path.string(), "cannot decode image (corrupt or truncated)"));
  return mat;
}

at::Tensor to_tensor(const cv::Mat& mat) {
  const auto dtype = mat.depth() == CV_16U ? at::kShort : at::kByte;
  TORCH_CHECK(mat.depth() == CV_8U || mat.depth() == CV_16U, "unsupported image depth ",
              mat.depth());
  std::vector<int64_t> shape{mat.rows, mat.cols};
  if (mat.channels() > 1) shape.push_back(mat.channels());
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  const cv::Mat contiguous = mat.isContinuous() ? mat : mat.clone();
  std::memcpy(t.data_ptr(), contiguous.data, contiguous.total() * contiguous.elemSize());
  // uint16 travels in int16 storage (LibTorch 1.13 has no uint16); reinterpret through int32.
  if (dtype == at::kShort) t = t.to(at::kInt).bitwise_and(0xFFFF);
  return t;
}

cv::Mat rgb_to_bgr(const cv::Mat& m) {
  cv::Mat out;
  if (m.channels() == 3) {
    cv::cvtColor(m, out, cv::COLOR_RGB2BGR);
  } else if (m.channels() == 4) {
    cv::cvtColor(m, out, cv::COLOR_RGBA2BGRA);
  } else {
    out = m;
  }
  return out;
}

cv::Mat bgr_to_rgb(const cv::Mat& m) {
  cv::Mat out;
  if (m.channels() == 3) {
    cv::cvtColor(m, out, cv::COLOR_BGR2RGB);
  } else if (m.channels() == 4) {
    cv::cvtColor(m, out, cv::COLOR_BGRA2RGBA);
  } else {
    out = m;
  }
  return out;
}

// A contiguous Mat over a copy of `image` ([H, W] or [H, W, C]); 16-bit when values need it.
cv::Mat to_mat(const at::Tensor& image, const std::string& where) {
  if (image.dim() != 2 && !(image.dim() == 3 && (image.size(2) == 3 || image.size(2) == 1))) {
    throw InputError(fmt::format("{}: expected an [H, W] or [H, W, 3] image, got [{}]", where,
                                 fmt::join(image.sizes(), ", ")));
  }
  const bool wide = image.scalar_type() != at::kByte && image.scalar_type() != at::kBool;
  if (wide && image.dim() == 3 && image.size(2) == 3) {
    throw InputError(where + ": colour images must be uint8");
  }
  at::Tensor t = image.cpu();
  if (wide) {
    const auto lo = t.min().item<int64_t>();
    const auto hi = t.max().item<int64_t>();
    if (lo < 0 || hi > 65535) {
      throw InputError(fmt::format("{}: label values {}..{} do not fit in 16 bits", where, lo, hi));
    }
  }
  const int rows = static_cast<int>(t.size(0));
  const int cols = static_cast<int>(t.size(1));
  const int channels = t.dim() == 3 ? static_cast<int>(t.size(2)) : 1;
  if (!wide) {
    t = t.to(at::kByte).contiguous();
    cv::Mat m(rows, cols, CV_8UC(channels), t.data_ptr());
    return channels == 3 ? rgb_to_bgr(m) : m.clone();
  }
  const auto values = t.to(at::kInt).contiguous();
  cv::Mat m(rows, cols, CV_16UC1);
  const int32_t* src = values.data_ptr<int32_t>();
  auto* dst = reinterpret_cast<uint16_t*>(m.data);
  for (int64_t i = 0; i < static_cast<int64_t>(rows) * cols; ++i)
    dst[i] = static_cast<uint16_t>(src[i]);
  return m;
}

std::string temp_sibling(const fs::path& path) {
  // Keeps the extension: OpenCV picks the container from it.
  return (path.parent_path() /
          fmt::format(".{}.tmp{}{}", path.stem().string(), ::getpid(), path.extension().string()))
      .string();
}

#else

[[noreturn]] void no_opencv() {
  throw NotAvailableError(
      "image and video files need OpenCV, which is off in this build (IRIS_WITH_OPENCV)");
}

#endif

}  // namespace

#if IRIS_HAVE_OPENCV

at::Tensor read_image_rgb(const fs::path& path) {
  return to_tensor(bgr_to_rgb(decode(path, cv::IMREAD_COLOR)));
}

at::Tensor read_image_raw(const fs::path& path) {
  return to_tensor(bgr_to_rgb(decode(path, cv::IMREAD_UNCHANGED)));
}

ImageSize read_image_size(const fs::path& path) {
  if (lower_extension(path) == ".png" && fs::is_regular_file(path)) {
    std::string bytes(24, '\0');
    std::ifstream in(path, std::ios::binary);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    bytes.resize(static_cast<std::size_t>(in.gcount()));
    check_signature(path, bytes);
    if (bytes.size() >= 24 && bytes.compare(12, 4, "IHDR") == 0) {
      const auto be32 = [&](std::size_t at) {
        int64_t v = 0;
        for (std::size_t i = 0; i < 4; ++i)
          v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
        return v;
      };
      return {be32(20), be32(16)};
    }
    throw InputError(file_message(path.string(), "PNG without an IHDR header (corrupt)"));
  }
  const cv::Mat m = decode(path, cv::IMREAD_UNCHANGED);
  return {m.rows, m.cols};
}

void write_image(const fs::path& path, const at::Tensor& image, int jpeg_quality) {
  const std::string ext = lower_extension(path);
  if (ext != ".png" && ext != ".jpg" && ext != ".jpeg") {
    throw InputError(file_message(path.string(), "image files are written as .png, .jpg or .jpeg"));
  }
  const cv::Mat mat = to_mat(image, path.string());
  if (mat.depth() == CV_16U && ext != ".png") {
    throw InputError(file_message(path.string(), "16-bit label maps need PNG"));
  }
  std::vector<int> params;
  if (ext != ".png") params = {cv::IMWRITE_JPEG_QUALITY, std::clamp(jpeg_quality, 0, 100)};
  std::vector<uchar> buffer;
  if (!cv::imencode(ext, mat, buffer, params)) {
    throw RuntimeFailure(file_message(path.string(), "cannot encode image"));
  }
  write_file_atomic(path,
                    std::string_view(reinterpret_cast<const char*>(buffer.data()), buffer.size()));
}

struct VideoReader::State {
  cv::VideoCapture capture;
  fs::path path;
};

VideoReader::VideoReader(const fs::path& path) : state_(std::make_unique<State>()) {
  state_->path = path;
  if (!fs::is_regular_file(path))
    throw InputError(file_message(path.string(), "no such video file"));
  if (!state_->capture.open(path.string()) || !state_->capture.isOpened()) {
    throw InputError(file_message(path.string(), "cannot open video (unknown container or codec)"));
  }
}

VideoReader::~VideoReader() = default;

at::Tensor VideoReader::next() {
  cv::Mat frame;
  if (!state_->capture.read(frame) || frame.empty()) return {};
  if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
  return to_tensor(bgr_to_rgb(frame));
}

double VideoReader::fps() const {
  return state_->capture.get(cv::CAP_PROP_FPS);
}
int64_t VideoReader::frame_count() const {
  return static_cast<int64_t>(state_->capture.get(cv::CAP_PROP_FRAME_COUNT));
}
int64_t VideoReader::width() const {
  return static_cast<int64_t>(state_->capture.get(cv::CAP_PROP_FRAME_WIDTH));
}
int64_t VideoReader::height() const {
  return static_cast<int64_t>(state_->capture.get(cv::CAP_PROP_FRAME_HEIGHT));
}

struct VideoWriter::State {
  cv::VideoWriter writer;
  fs::path path;
  std::string temp;
  int64_t width = 0;
  int64_t height = 0;
  bool closed = false;
};

VideoWriter::VideoWriter(const fs::path& path, int64_t width, int64_t height, double fps,
                         const std::string& codec)
    : state_(std::make_unique<State>()) {
  if (codec.size() != 4)
    throw InputError("video codec must be a FourCC such as mp4v or MJPG, got " + codec);
  if (width <= 0 || height <= 0 || fps <= 0) {
    throw InputError(file_message(path.string(), "video size and fps must be positive"));
  }
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
  state_->path = path;
  state_->temp = temp_sibling(path);
  state_->width = width;
  state_->height = height;
  const int fourcc = cv::VideoWriter::fourcc(codec[0], codec[1], codec[2], codec[3]);
  if (!state_->writer.open(state_->temp, fourcc, fps,
                           cv::Size(static_cast<int>(width), static_cast<int>(height)), true)) {
    throw RuntimeFailure(file_message(path.string(), "cannot open a video writer for codec " +
                                                         codec + " (not in this OpenCV build?)"));
  }
}

VideoWriter::~VideoWriter() {
  if (!state_->closed) {
    state_->writer.release();
    std::error_code ec;
    fs::remove(state_->temp, ec);
  }
}

void VideoWriter::write(const at::Tensor& frame) {
  TORCH_CHECK(!state_->closed, "VideoWriter::write after close");
  if (frame.dim() != 3 || frame.size(0) != state_->height || frame.size(1) != state_->width ||
      frame.size(2) != 3) {
    throw InputError(fmt::format("{}: frame {} is [{}], expected [{}, {}, 3]",
                                 state_->path.string(), frames_, fmt::join(frame.sizes(), ", "),
                                 state_->height, state_->width));
  }
  state_->writer.write(to_mat(frame, state_->path.string()));
  ++frames_;
}

void VideoWriter::close() {
  if (state_->closed) return;
  state_->writer.release();
  state_->closed = true;
  std::error_code ec;
  fs::rename(state_->temp, state_->path, ec);
  if (ec) {
    fs::remove(state_->temp, ec);
    throw RuntimeFailure(file_message(state_->path.string(), "cannot rename the finished video"));
  }
}

#else

at::Tensor read_image_rgb(const fs::path&) {
  no_opencv();
}
at::Tensor read_image_raw(const fs::path&) {
  no_opencv();
}
ImageSize read_image_size(const fs::path&) {
  no_opencv();
}
void write_image(const fs::path&, const at::Tensor&, int) {
  no_opencv();
}
struct VideoReader::State {};
VideoReader::VideoReader(const fs::path&) {
  no_opencv();
}
VideoReader::~VideoReader() = default;
at::Tensor VideoReader::next() {
  no_opencv();
}
double VideoReader::fps() const {
  no_opencv();
}
int64_t VideoReader::frame_count() const {
  no_opencv();
}
int64_t VideoReader::width() const {
  no_opencv();
}
int64_t VideoReader::height() const {
  no_opencv();
}
struct VideoWriter::State {};
VideoWriter::VideoWriter(const fs::path&, int64_t, int64_t, double, const std::string&) {
  no_opencv();
}
VideoWriter::~VideoWriter() = default;
void VideoWriter::write(const at::Tensor&) {
  no_opencv();
}
void VideoWriter::close() {
  no_opencv();
}

#endif

bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i])) != 0;
    const bool db = std::isdigit(static_cast<unsigned char>(b[j])) != 0;
    if (da && db) {
      // Compare digit runs by value: skip leading zeros, then longer is larger, then digits.
      std::size_t ia = i;
      std::size_t jb = j;
      while (ia < a.size() && a[ia] == '0') ++ia;
      while (jb < b.size() && b[jb] == '0') ++jb;
      std::size_t ea = ia;
      std::size_t eb = jb;
      while (ea < a.size() && std::isdigit(static_cast<unsigned char>(a[ea]))) ++ea;
      while (eb < b.size() && std::isdigit(static_cast<unsigned char>(b[eb]))) ++eb;
      if (ea - ia != eb - jb) return ea - ia < eb - jb;
      const int c = a.compare(ia, ea - ia, b, jb, eb - jb);
      if (c != 0) return c < 0;
      if (ea - i != eb - j) return ea - i < eb - j;  // "01" after "1": fewer leading zeros first
      i = ea;
      j = eb;
      continue;
    }
    if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

bool is_image_file(const fs::path& path) {
  const std::string ext = lower_extension(path);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" ||
         ext == ".tiff";
}

std::vector<fs::path> list_frames(const fs::path& dir) {
  if (!fs::is_directory(dir))
    throw InputError(file_message(dir.string(), "not a folder of frames"));
  std::vector<fs::path> frames;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && is_image_file(entry.path()) &&
        entry.path().filename().string()[0] != '.') {
      frames.push_back(entry.path());
    }
  }
  std::sort(frames.begin(), frames.end(), [](const fs::path& a, const fs::path& b) {
    return natural_less(a.filename().string(), b.filename().string());
  });
  return frames;
}

}  // namespace iris
