#include "core/progress.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "core/logging.h"

namespace iris {

Progress::Progress(std::string label, std::int64_t total, std::string unit)
    : label_(std::move(label)), total_(total), unit_(std::move(unit)) {
  tty_ = ::isatty(STDERR_FILENO) && !console_is_quiet();
  start_ = last_render_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::set_plain(double seconds) {
  tty_ = false;
  log_every_ = seconds;
}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<std::int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}

void Progress::advance(std::int64_t n, const std::string& note) {
  done_ += n;
  if (!note.empty()) note_ = note;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_render_).count();
  if ((tty_ && since >= 0.1) || (!tty_ && since >= log_every_) || (total_ > 0 && done_ >= total_)) {
    last_render_ = now;
    render(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_ || rendered_done_ != done_) render(true);
}

void Progress::render(bool final) {
  rendered_done_ = done_;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  const double eta = (total_ > 0 && rate > 0) ? (total_ - done_) / rate : NAN;
  const std::string counts =
      total_ > 0 ? fmt::format("{}/{}", done_, total_) : fmt::format("{}", done_);
  const std::string timing = fmt::format("{:.2f} {}/s, elapsed {}, eta {}", rate, unit_,
                                         format_duration(elapsed), format_duration(eta));
  if (tty_) {
    constexpr int kWidth = 28;
    const double fraction = total_ > 0 ? std::min(1.0, double(done_) / total_) : 0.0;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    std::fprintf(stderr, "\r%s [%s] %s %s %s\033[K", label_.c_str(), bar.c_str(), counts.c_str(),
                 timing.c_str(), note_.c_str());
    if (final) std::fputc('\n', stderr);
    std::fflush(stderr);
  } else if (!final || done_ > 0) {
    spdlog::info("{}: {} ({}){}", label_, counts, timing, note_.empty() ? "" : " " + note_);
  }
}

}  // namespace iris
