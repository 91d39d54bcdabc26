#include "train/resume.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>
#include <sstream>

#include "core/atomic_file.h"

namespace iris {

void truncate_metrics(const RunDir& run, int64_t step) {
  if (!fs::exists(run.metrics_path())) return;
  std::string kept;
  std::size_t dropped = 0;
  for (const auto& line : read_complete_lines(run.metrics_path())) {
    if (line.empty()) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw InputError(
          file_message(run.metrics_path().string(), std::string("not JSON: ") + e.what()));
    }
    if (row.value("step", int64_t{0}) > step) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  write_file_atomic(run.metrics_path(), kept);
  if (dropped > 0) spdlog::info("resume: dropped {} metrics rows after step {}", dropped, step);
}

std::string config_differences(const std::string& stored, const std::string& given) {
  std::istringstream a(stored), b(given);
  std::string la, lb, out;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(a, la));
    const bool gb = static_cast<bool>(std::getline(b, lb));
    if (!ga && !gb) break;
    if (la != lb) out += fmt::format("\n  run: '{}'  given: '{}'", ga ? la : "", gb ? lb : "");
    if (!ga) la.clear();
    if (!gb) lb.clear();
  }
  return out;
}

void save_cpu_generator(torch::serialize::OutputArchive& archive) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  archive.write("rng/torch_cpu", generator.get_state());
}

void load_cpu_generator(torch::serialize::InputArchive& archive) {
  at::Tensor state;
  archive.read("rng/torch_cpu", state);
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace iris
