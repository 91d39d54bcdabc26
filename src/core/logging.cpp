#include "core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "core/error.h"

namespace iris {
namespace {

std::mutex g_mutex;
std::shared_ptr<spdlog::sinks::sink> g_console;
std::shared_ptr<spdlog::sinks::sink> g_file;
bool g_quiet = false;
spdlog::level::level_enum g_level = spdlog::level::info;

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

void rebuild_logger() {
  std::vector<spdlog::sink_ptr> sinks;
  if (g_console) sinks.push_back(g_console);
  if (g_file) sinks.push_back(g_file);
  auto logger = std::make_shared<spdlog::logger>("iris", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::trace);  // sinks filter
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace

LogLevel parse_log_level(const std::string& text) {
  if (text == "trace") return LogLevel::kTrace;
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "error") return LogLevel::kError;
  if (text == "off") return LogLevel::kOff;
  throw UsageError("--log-level " + text + ": expected trace, debug, info, warn, error or off");
}

void init_logging(LogLevel level, bool quiet) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_quiet = quiet;
  g_level = to_spdlog(level);
  g_console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  g_console->set_pattern("%^[%L]%$ %v");
  g_console->set_level(quiet ? std::max(g_level, spdlog::level::warn) : g_level);
  rebuild_logger();
}

void log_to_file(const std::filesystem::path& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  try {
    g_file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path.string(), /*truncate=*/false);
  } catch (const spdlog::spdlog_ex& e) {
    throw RuntimeFailure(path.string() + ": cannot open log file: " + e.what());
  }
  g_file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  g_file->set_level(std::min(g_level, spdlog::level::debug));
  rebuild_logger();
}

void stop_log_file() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_file.reset();
  rebuild_logger();
}

bool console_is_quiet() { return g_quiet; }

}  // namespace iris
