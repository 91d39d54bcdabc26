// Console + run-folder logging through spdlog.
#pragma once

#include <filesystem>
#include <string>

namespace iris {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Parses trace|debug|info|warn|error|off; throws UsageError otherwise.
LogLevel parse_log_level(const std::string& text);

// Sets up the default logger writing to stderr. `quiet` raises the console level to warnings.
void init_logging(LogLevel level, bool quiet);

// Also logs (at debug level and above) into `path`, e.g. a run's log.txt. Replaces an earlier file.
void log_to_file(const std::filesystem::path& path);
void stop_log_file();

bool console_is_quiet();

}  // namespace iris
