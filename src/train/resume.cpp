#include "train/resume.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <map>
#include <mutex>
#include <sstream>

#include "core/atomic_file.h"
#include "core/precision.h"

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

void save_optimizer(torch::serialize::OutputArchive& archive, torch::optim::Optimizer* optimizer) {
  if (!optimizer) return;
  torch::serialize::OutputArchive optim_archive;
  optimizer->save(optim_archive);
  archive.write("optimizer", optim_archive);
}

void load_optimizer(torch::serialize::InputArchive& archive, torch::optim::Optimizer* optimizer) {
  if (!optimizer) return;
  torch::serialize::InputArchive optim_archive;
  archive.read("optimizer", optim_archive);
  optimizer->load(optim_archive);
}

void save_scaler(torch::serialize::OutputArchive& archive, const LossScaler* scaler) {
  if (!scaler) return;
  for (const auto& [key, value] : scaler->state_dict()) archive.write("scaler/" + key, value);
}

void load_scaler(torch::serialize::InputArchive& archive, LossScaler* scaler) {
  if (!scaler) return;
  std::map<std::string, at::Tensor> state;
  for (const char* key : {"scale", "growth_tracker"}) {
    archive.read(std::string("scaler/") + key, state[key]);
  }
  scaler->load_state_dict(state);
}

c10::IValue read_value(torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue value;
  archive.read(key, value);
  return value;
}

}  // namespace iris
