// Progress for long loops: a redrawn bar with rate and ETA on a terminal; on a pipe or file
// (CI, logs) a plain log line every `log_every` seconds instead, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace iris {

class Progress {
 public:
  Progress(std::string label, std::int64_t total, std::string unit = "it");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(std::int64_t n = 1, const std::string& note = "");
  void finish();

  // Forces the non-terminal mode (for tests); `seconds` between log lines.
  void set_plain(double seconds);

  // "12.3 it/s" style helpers, exposed for tests.
  static std::string format_duration(double seconds);

 private:
  void render(bool final);

  std::string label_;
  std::int64_t total_;
  std::string unit_;
  std::int64_t done_ = 0;
  std::int64_t rendered_done_ = -1;  // done_ at the last render, so finish() does not repeat it
  std::string note_;
  bool tty_ = false;
  bool finished_ = false;
  double log_every_ = 10.0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_render_;
};

}  // namespace iris
