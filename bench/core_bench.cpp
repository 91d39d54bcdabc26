// Micro-benchmarks of the foundation: config binding and crash-safe writes.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/run_dir.h"

namespace {

struct BenchConfig {
  iris::RunOptions run;
  double lr = 1e-3;
  std::vector<std::int64_t> patch{16, 128, 128};
  void visit(iris::ConfigVisitor& v) {
    v.section("run", run);
    v.field("lr", lr, "learning rate");
    v.field("patch", patch, "patch size");
  }
};

void BM_ConfigLoadWithOverrides(benchmark::State& state) {
  const iris::ConfigSource source{"", {"run.name=a", "run.seed=3", "lr=0.01", "patch=[1,2,3]"}};
  for (auto _ : state) benchmark::DoNotOptimize(iris::load_config<BenchConfig>(source));
}
BENCHMARK(BM_ConfigLoadWithOverrides);

void BM_ConfigDump(benchmark::State& state) {
  BenchConfig config;
  for (auto _ : state) benchmark::DoNotOptimize(iris::dump_config(config));
}
BENCHMARK(BM_ConfigDump);

// Whole-file atomic write (temp + fsync + rename) against a plain append of one metrics line.
void BM_WriteFileAtomic(benchmark::State& state) {
  const auto path = std::filesystem::temp_directory_path() / "iris-bench-atomic.json";
  const std::string payload(static_cast<std::size_t>(state.range(0)), 'x');
  for (auto _ : state) iris::write_file_atomic(path, payload);
  std::filesystem::remove(path);
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_WriteFileAtomic)->Arg(1 << 10)->Arg(1 << 20);

void BM_AppendMetricsLine(benchmark::State& state) {
  const auto path = std::filesystem::temp_directory_path() / "iris-bench-metrics.jsonl";
  for (auto _ : state) iris::append_line(path, R"({"step": 1, "train/loss": 0.25})");
  std::filesystem::remove(path);
}
BENCHMARK(BM_AppendMetricsLine);

}  // namespace
