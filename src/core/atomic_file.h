// Crash-safe file output: whole files are written to a temporary file in the same folder and
// renamed over the target, so a reader sees either the old or the new complete file.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace iris {

namespace fs = std::filesystem;

// Writes `content` to `path` atomically (temporary file, fsync, rename, fsync of the folder).
// Creates missing parent folders. Throws RuntimeFailure naming the path on any failure.
void write_file_atomic(const fs::path& path, std::string_view content);

// Streams into a temporary file; commit() renames it over the target. Destroying an uncommitted
// AtomicFile removes the temporary file, so an exception mid-write leaves the target untouched.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view data);
  void commit();
  const fs::path& temp_path() const { return temp_; }

 private:
  fs::path path_;
  fs::path temp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// Appends one line (a '\n' is added) with a single write(2) on an O_APPEND descriptor, then
// fsyncs. A crash can at worst leave a final line without its '\n', which read_lines() drops.
void append_line(const fs::path& path, std::string_view line);

// Reads a whole file; throws InputError naming the file if it cannot be read.
std::string read_file(const fs::path& path);

// Complete lines of a line-oriented log; a trailing fragment without '\n' (an interrupted
// append) is not returned.
std::vector<std::string> read_complete_lines(const fs::path& path);

}  // namespace iris
