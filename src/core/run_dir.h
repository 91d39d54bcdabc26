// A run folder: everything one run produces, under runs/<name>/.
//
//   config.yaml     the fully resolved config (re-runnable as is)
//   metrics.jsonl   one JSON object per logged step (append-only; see append_line)
//   summary.json    final/best numbers, rewritten atomically
//   checkpoints/    model, optimiser and RNG states
//   report/         generated reports
//   log.txt         the run's log
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"

namespace iris {

namespace fs = std::filesystem;

// Settings every run shares; embedded as the `run:` section of command configs.
struct RunOptions {
  std::string name;           // empty: <prefix>-<timestamp>
  std::string root = "runs";  // parent folder of run folders
  std::int64_t seed = 0;
  std::string device = "auto";
  int threads = 0;                 // 0: LibTorch's default
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (see core/precision.h)
  bool channels_last = false;      // conv-heavy models and their inputs in channels-last layout
  double loss_scale = 65536.0;     // fp16: initial dynamic loss scale

  void visit(ConfigVisitor& v);
};

class RunDir {
 public:
  enum class Mode { kCreate, kResume, kCreateOrResume };

  // Creates (or reopens) root/name with its subfolders. kCreate refuses an existing run folder
  // that already holds a config; kResume requires one.
  static RunDir open(const fs::path& root, const std::string& name, Mode mode = Mode::kCreate);
  // Opens an existing run folder by path, for reading.
  static RunDir existing(const fs::path& path);

  const fs::path& path() const { return path_; }
  std::string name() const { return path_.filename().string(); }
  fs::path config_path() const { return path_ / "config.yaml"; }
  fs::path metrics_path() const { return path_ / "metrics.jsonl"; }
  fs::path summary_path() const { return path_ / "summary.json"; }
  fs::path checkpoints_dir() const { return path_ / "checkpoints"; }
  fs::path report_dir() const { return path_ / "report"; }
  fs::path log_path() const { return path_ / "log.txt"; }

  void write_config(const std::string& yaml) const;
  void append_metrics(const nlohmann::json& row) const;
  void write_summary(const nlohmann::json& summary) const;
  std::vector<nlohmann::json> read_metrics() const;
  nlohmann::json read_summary() const;

 private:
  explicit RunDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// "<prefix>-YYYYmmdd-HHMMSS" in local time, for unnamed runs.
std::string generated_run_name(const std::string& prefix);

}  // namespace iris
