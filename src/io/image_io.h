// Image and video files through OpenCV: frames as RGB uint8 tensors, label maps as single-channel
// uint8/uint16 tensors. Without OpenCV (IRIS_WITH_OPENCV=OFF) every function throws
// NotAvailableError, except the file-name helpers at the bottom.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace iris {

// [H, W, 3] uint8, RGB. Throws InputError naming the file when it is missing, is not the format
// its extension says (a ".png" without the PNG signature) or cannot be decoded.
at::Tensor read_image_rgb(const std::filesystem::path& path);

// The file's pixels as stored, channels in RGB(A) order: [H, W] for grey files, [H, W, C] for
// colour ones; uint8, or int32 holding the values of 16-bit files (LibTorch 1.13 has no uint16).
// Label maps (grey values or colour codes) are read with this.
at::Tensor read_image_raw(const std::filesystem::path& path);

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
};
// From the PNG header alone where possible (no pixel decoding); other formats are decoded.
ImageSize read_image_size(const std::filesystem::path& path);

// Writes [H, W] uint8 or integer (grey; values above 255 give a 16-bit PNG) or [H, W, 3] uint8
// (RGB) to PNG or JPEG, chosen by the extension; atomically (temporary file + rename).
// `jpeg_quality` is 0..100.
void write_image(const std::filesystem::path& path, const at::Tensor& image, int jpeg_quality = 95);

// Reads a video file frame by frame (any container/codec OpenCV's videoio can decode).
class VideoReader {
 public:
  explicit VideoReader(const std::filesystem::path& path);  // InputError if it cannot be opened
  ~VideoReader();
  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;

  // The next frame as [H, W, 3] uint8 RGB, or an undefined tensor at the end of the video.
  at::Tensor next();
  double fps() const;
  int64_t frame_count() const;  // as the container reports it; may be an estimate
  int64_t width() const;
  int64_t height() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Writes [H, W, 3] uint8 RGB frames into a temporary file that close() renames over the target;
// destroying an unclosed writer removes the temporary file. `codec` is a FourCC: "mp4v" for .mp4,
// "MJPG" for .avi (OpenCV's built-in encoder, always present).
class VideoWriter {
 public:
  VideoWriter(const std::filesystem::path& path, int64_t width, int64_t height, double fps,
              const std::string& codec = "MJPG");
  ~VideoWriter();
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  void write(const at::Tensor& frame);
  void close();
  int64_t frames_written() const { return frames_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  int64_t frames_ = 0;
};

// "frame2" < "frame10": digit runs compare by value, everything else byte-wise.
bool natural_less(const std::string& a, const std::string& b);

// The image files (.png, .jpg, .jpeg, .bmp, .tif, .tiff; any case) directly in `dir`, sorted
// naturally by file name. InputError if `dir` is not a folder.
std::vector<std::filesystem::path> list_frames(const std::filesystem::path& dir);

bool is_image_file(const std::filesystem::path& path);

}  // namespace iris
