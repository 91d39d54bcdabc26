// TensorBoard scalar event files without TensorFlow or protobuf: TFRecord framing around Event
// protos encoded by hand in the protobuf wire format. TensorBoard, tensorboardX readers and W&B's
// TensorBoard sync read them as they read TensorFlow's own.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iris::track {

// CRC-32C (Castagnoli), the checksum TFRecord uses; crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(std::string_view data);
// TFRecord's masked form: rotate right by 15, add 0xa282ead8.
std::uint32_t masked_crc32c(std::string_view data);

// One TFRecord: u64 length, masked CRC of the length, data, masked CRC of the data (little
// endian).
std::string tfrecord(std::string_view data);

// Serialised Event protos: the first event of every file, and one step of scalar summaries.
std::string file_version_event(double wall_time);
std::string scalars_event(double wall_time, std::int64_t step,
                          const std::vector<std::pair<std::string, float>>& scalars);

// Appends events to `dir/events.out.tfevents.<seconds>.<host>` (created with the folder), each
// flushed so TensorBoard sees a run while it trains. Throws RuntimeFailure naming the file when
// it cannot be written.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, double value, std::int64_t step,
                  std::optional<double> wall_time = std::nullopt);
  // Several tags of one step in one event.
  void add_scalars(const std::vector<std::pair<std::string, double>>& scalars, std::int64_t step,
                   std::optional<double> wall_time = std::nullopt);

  const std::filesystem::path& path() const { return path_; }

 private:
  void write_record(const std::string& event);

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace iris::track
