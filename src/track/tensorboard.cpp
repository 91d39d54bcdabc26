#include "track/tensorboard.h"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>

#include "core/error.h"

namespace iris::track {

namespace {

constexpr std::uint32_t kCastagnoliReversed = 0x82F63B78u;
constexpr std::uint32_t kMaskDelta = 0xa282ead8u;

std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCastagnoliReversed : c >> 1;
    table[i] = c;
  }
  return table;
}

std::uint32_t mask(std::uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}

void put_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

// Protobuf wire format: keys are (field << 3) | wire type.
enum WireType : std::uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

void put_key(std::string& out, int field, WireType type) {
  put_varint(out, (static_cast<std::uint64_t>(field) << 3) | type);
}

void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_double(std::string& out, int field, double value) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  put_key(out, field, kFixed64);
  put_le(out, bits, 8);
}

void put_float(std::string& out, int field, float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  put_key(out, field, kFixed32);
  put_le(out, bits, 4);
}

// tensorflow/core/util/event.proto: Event{wall_time = 1, step = 2, file_version = 3,
// summary = 5}; summary.proto: Summary{value = 1}, Summary.Value{tag = 1, simple_value = 2}.
namespace event {
constexpr int kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5;
}
namespace summary {
constexpr int kValue = 1;
}
namespace value {
constexpr int kTag = 1, kSimpleValue = 2;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  std::string out = host;
  for (char& c : out) {
    if (c == '/') c = '_';
  }
  return out;
}

}  // namespace

std::uint32_t crc32c(std::string_view data) {
  static const auto table = make_crc_table();
  std::uint32_t crc = 0xffffffffu;
  for (const unsigned char c : data) crc = table[(crc ^ c) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

std::uint32_t masked_crc32c(std::string_view data) {
  return mask(crc32c(data));
}

std::string tfrecord(std::string_view data) {
  std::string length;
  put_le(length, data.size(), 8);
  std::string out = length;
  put_le(out, masked_crc32c(length), 4);
  out.append(data);
  put_le(out, masked_crc32c(data), 4);
  return out;
}

std::string file_version_event(double wall_time) {
  std::string out;
  put_double(out, event::kWallTime, wall_time);
  put_bytes(out, event::kFileVersion, "brain.Event:2");
  return out;
}

std::string scalars_event(double wall_time, std::int64_t step,
                          const std::vector<std::pair<std::string, float>>& scalars) {
  std::string values;
  for (const auto& [tag, v] : scalars) {
    std::string one;
    put_bytes(one, value::kTag, tag);
    put_float(one, value::kSimpleValue, v);
    put_bytes(values, summary::kValue, one);
  }
  std::string out;
  put_double(out, event::kWallTime, wall_time);
  put_key(out, event::kStep, kVarint);
  put_varint(out, static_cast<std::uint64_t>(step));  // int64: negatives take ten bytes
  put_bytes(out, event::kSummary, values);
  return out;
}

TensorBoardWriter::TensorBoardWriter(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw RuntimeFailure(file_message(dir.string(), "cannot create folder: " + ec.message()));
  const double now = now_seconds();
  const std::string base =
      fmt::format("events.out.tfevents.{:010d}.{}", static_cast<long long>(now), host_name());
  path_ = dir / base;
  for (int n = 1; std::filesystem::exists(path_); ++n) path_ = dir / fmt::format("{}.{}", base, n);
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw RuntimeFailure(file_message(path_.string(), "cannot create event file"));
  write_record(file_version_event(now));
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, std::int64_t step,
                                   std::optional<double> wall_time) {
  add_scalars({{tag, value}}, step, wall_time);
}

void TensorBoardWriter::add_scalars(const std::vector<std::pair<std::string, double>>& scalars,
                                    std::int64_t step, std::optional<double> wall_time) {
  std::vector<std::pair<std::string, float>> values;
  values.reserve(scalars.size());
  for (const auto& [tag, v] : scalars) values.emplace_back(tag, static_cast<float>(v));
  write_record(scalars_event(wall_time.value_or(now_seconds()), step, values));
}

void TensorBoardWriter::write_record(const std::string& event) {
  const std::string record = tfrecord(event);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    throw RuntimeFailure(file_message(path_.string(), "cannot write event"));
  }
}

}  // namespace iris::track
