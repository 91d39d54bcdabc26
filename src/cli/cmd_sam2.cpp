#include "cli/cmd_sam2.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "models/sam2/sam2_verify.h"

namespace iris::cli {
namespace {

struct VerifyOptions {
  std::string fixture;
  double tolerance = 1e-4;
  std::string json;
};

int run_verify(const VerifyOptions& o) {
  const auto report = models::sam2::verify_sam2_fixture(o.fixture, o.tolerance);
  std::cout << fmt::format("{:<34} {:<22} {:>12} {:>12}  {}\n", "tensor", "shape",
                           "rel. error", "max |diff|", "result");
  for (const auto& t : report.tensors) {
    std::cout << fmt::format("{:<34} {:<22} {:>12.3e} {:>12.3e}  {}\n", t.name,
                             fmt::format("[{}]", fmt::join(t.shape, ", ")), t.relative_error,
                             t.max_abs_error, t.passed ? "ok" : "FAIL");
  }
  for (const auto& name : report.unchecked) {
    std::cout << fmt::format("{:<34} not produced by this check\n", name);
  }
  std::size_t failed = 0;
  for (const auto& t : report.tensors) failed += t.passed ? 0 : 1;
  std::cout << fmt::format("{} of {} tensors within relative error {:.0e}: {}\n",
                           report.tensors.size() - failed, report.tensors.size(), report.tolerance,
                           report.passed() ? "PASS" : "FAIL");
  if (!o.json.empty()) {
    nlohmann::json j;
    j["fixture"] = o.fixture;
    j["tolerance"] = report.tolerance;
    j["passed"] = report.passed();
    for (const auto& t : report.tensors) {
      j["tensors"].push_back({{"name", t.name},
                              {"shape", t.shape},
                              {"relative_error", t.relative_error},
                              {"max_abs_error", t.max_abs_error},
                              {"passed", t.passed}});
    }
    write_file_atomic(o.json, j.dump(2) + "\n");
  }
  return report.passed() ? 0 : static_cast<int>(ExitCode::kRuntime);
}

}  // namespace

std::function<int()> setup_sam2(CLI::App& app, const GlobalOptions&) {
  app.require_subcommand(1);
  auto verify_options = std::make_shared<VerifyOptions>();
  CLI::App* verify = app.add_subcommand(
      "verify",
      "run a fixture written by the official SAM2 through this implementation and compare every "
      "tensor (relative error ||ours - theirs|| / ||theirs||)");
  verify->add_option("fixture", verify_options->fixture,
                     "fixture folder: fixture.json, config, checkpoint.pt, expected.pt")
      ->required()
      ->check(CLI::ExistingDirectory);
  verify->add_option("--tolerance", verify_options->tolerance, "largest relative error allowed")
      ->capture_default_str();
  verify->add_option("--json", verify_options->json, "also write the comparison as JSON");
  return [verify_options, verify]() -> int {
    if (verify->parsed()) return run_verify(*verify_options);
    throw UsageError("sam2: expected a subcommand: verify");
  };
}

}  // namespace iris::cli
