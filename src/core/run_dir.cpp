#include "core/run_dir.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>

#include "core/atomic_file.h"
#include "core/error.h"

namespace iris {

void RunOptions::visit(ConfigVisitor& v) {
  v.field("name", name, "run folder name under root; empty: generated from the time");
  v.field("root", root, "folder holding run folders");
  v.field("seed", seed, "random seed for everything in the run");
  v.field("device", device, "cpu | cuda | cuda:N | auto");
  v.field("threads", threads, "CPU threads for LibTorch; 0 keeps its default");
  v.choice("precision", precision, {"fp32", "bf16", "fp16"},
           "autocast precision of forward passes (fp16 trains with dynamic loss scaling)");
  v.field("channels_last", channels_last,
          "channels-last memory layout for convolutional models (IRIS) and their inputs");
  v.field("loss_scale", loss_scale,
          "fp16 only: initial loss scale (halved after a step with inf/NaN gradients, which is "
          "skipped; doubled after 2000 finite steps)");
}

RunDir RunDir::open(const fs::path& root, const std::string& name, Mode mode) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    throw InputError(
        fmt::format("run name '{}': expected a non-empty folder name without '/'", name));
  }
  RunDir run(root / name);
  const bool has_config = fs::exists(run.config_path());
  if (mode == Mode::kCreate && has_config) {
    throw InputError(
        fmt::format("{}: a run with this name already exists; resume it or choose another name",
                    run.path_.string()));
  }
  if (mode == Mode::kResume && !has_config) {
    throw InputError(file_message(run.path_.string(), "no run to resume (config.yaml is missing)"));
  }
  std::error_code ec;
  for (const fs::path& dir : {run.path_, run.checkpoints_dir(), run.report_dir()}) {
    fs::create_directories(dir, ec);
    if (ec)
      throw RuntimeFailure(file_message(dir.string(), "cannot create folder: " + ec.message()));
  }
  return run;
}

RunDir RunDir::existing(const fs::path& path) {
  RunDir run(path);
  if (!fs::is_directory(path)) throw InputError(file_message(path.string(), "not a run folder"));
  return run;
}

void RunDir::write_config(const std::string& yaml) const {
  write_file_atomic(config_path(), yaml);
}

void RunDir::append_metrics(const nlohmann::json& row) const {
  if (!row.is_object()) throw RuntimeFailure("metrics row must be a JSON object");
  append_line(metrics_path(), row.dump());
}

void RunDir::write_summary(const nlohmann::json& summary) const {
  write_file_atomic(summary_path(), summary.dump(2) + "\n");
}

std::vector<nlohmann::json> RunDir::read_metrics() const {
  std::vector<nlohmann::json> rows;
  if (!fs::exists(metrics_path())) return rows;
  std::size_t line_number = 0;
  for (const auto& line : read_complete_lines(metrics_path())) {
    ++line_number;
    if (line.empty()) continue;
    try {
      rows.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(fmt::format("{}:{}: not a JSON object: {}", metrics_path().string(),
                                   line_number, e.what()));
    }
  }
  return rows;
}

nlohmann::json RunDir::read_summary() const {
  const std::string text = read_file(summary_path());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(
        file_message(summary_path().string(), std::string("not valid JSON: ") + e.what()));
  }
}

std::string generated_run_name(const std::string& prefix) {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &local);
  return prefix + "-" + stamp;
}

}  // namespace iris
