#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"

namespace iris {
namespace {

std::string errno_text() { return std::strerror(errno); }

fs::path make_temp_name(const fs::path& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), ".tmp.%d.%08llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(rng() & 0xffffffffULL));
  fs::path temp = path;
  temp += suffix;
  return temp;
}

void fsync_folder(const fs::path& folder) {
  int fd = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void ensure_parent(const fs::path& path) {
  const fs::path parent = path.parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw RuntimeFailure(file_message(parent.string(), "cannot create folder: " + ec.message()));
}

}  // namespace

AtomicFile::AtomicFile(fs::path path) : path_(std::move(path)) {
  ensure_parent(path_);
  temp_ = make_temp_name(path_);
  file_ = std::fopen(temp_.c_str(), "wb");
  if (!file_) {
    throw RuntimeFailure(file_message(path_.string(), "cannot open for writing: " + errno_text()));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void AtomicFile::write(std::string_view data) {
  if (committed_ || !file_) throw RuntimeFailure(file_message(path_.string(), "write after commit"));
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), file_) != data.size()) {
    throw RuntimeFailure(file_message(path_.string(), "write failed: " + errno_text()));
  }
}

void AtomicFile::commit() {
  if (committed_) return;
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
    throw RuntimeFailure(file_message(path_.string(), "flush failed: " + errno_text()));
  }
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) {
    throw RuntimeFailure(file_message(path_.string(), "rename failed: " + errno_text()));
  }
  committed_ = true;
  fsync_folder(path_.parent_path());
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  AtomicFile file(path);
  file.write(content);
  file.commit();
}

void append_line(const fs::path& path, std::string_view line) {
  ensure_parent(path);
  std::string buffer;
  buffer.reserve(line.size() + 1);
  buffer.append(line);
  buffer.push_back('\n');
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw RuntimeFailure(file_message(path.string(), "cannot open for append: " + errno_text()));
  const ssize_t written = ::write(fd, buffer.data(), buffer.size());
  const bool ok = written == static_cast<ssize_t>(buffer.size()) && ::fsync(fd) == 0;
  const std::string why = ok ? "" : errno_text();
  ::close(fd);
  if (!ok) throw RuntimeFailure(file_message(path.string(), "append failed: " + why));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const char* why = fs::exists(path) ? "cannot be read" : "no such file";
    throw InputError(file_message(path.string(), why));
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> read_complete_lines(const fs::path& path) {
  const std::string text = read_file(path);
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find('\n', start);
    if (end == std::string::npos) break;
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace iris
