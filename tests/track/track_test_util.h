// Run folders written the way training and `iris runs import` write them, for the track tests.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <string>

#include "core/run_dir.h"
#include "track/run_table.h"

namespace iris::test {

// A study-style run: config keys as in the W&B export, eval metrics in summary.json.
inline void make_study_run(const std::filesystem::path& root, const std::string& folder,
                           const std::string& dataset, const std::string& prompt,
                           const std::string& modules_yaml, int epochs, double dice, double miou,
                           double mae) {
  const RunDir run = RunDir::open(root, folder);
  run.write_config("data_module:\n  data:\n    name: " + dataset +
                   "\nmodule:\n  model:\n    prompt_type: " + prompt +
                   "\n    trainable_modules: " + modules_yaml + "\n    lr: 0.0001\ntrainer:\n" +
                   "  max_epochs: " + std::to_string(epochs) + "\n  precision: bf16\n");
  run.append_metrics({{"step", 1}, {"train/loss", 0.5}});
  run.append_metrics({{"step", 2}, {"train/loss", 0.25}, {"lr", 1e-4}});
  run.write_summary({{"eval/Dice", dice},
                     {"eval/mIoU", miou},
                     {"eval/MAE", mae},
                     {"time/seconds", 3725.5},
                     {"steps", 2}});
}

// Sets every file of a run folder (and the folder) back in time, as if it stopped writing then.
inline void age_run(const std::filesystem::path& folder, std::chrono::seconds age) {
  const auto when = std::filesystem::file_time_type::clock::now() - age;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    std::filesystem::last_write_time(entry.path(), when);
  }
  std::filesystem::last_write_time(folder, when);
}

}  // namespace iris::test
