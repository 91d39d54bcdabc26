#include "cli/cli.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "core/build_info.h"
#include "core/device.h"
#include "core/error.h"
#include "core/logging.h"

namespace iris::cli {
namespace {

void add_global_options(CLI::App& app, GlobalOptions& g) {
  app.add_option("--device", g.device, "cpu | cuda | cuda:N | auto")->capture_default_str();
  app.add_option("--threads", g.threads, "CPU threads for LibTorch (0: its default)")
      ->capture_default_str();
  app.add_option("--precision", g.precision,
                 "fp32 | bf16 | fp16: autocast of forward passes (default: a config's "
                 "run.precision, else fp32)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--seed", g.seed, "random seed (overrides run.seed in configs)");
  app.add_option("--log-level", g.log_level, "trace | debug | info | warn | error | off")
      ->capture_default_str();
  app.add_flag("-q,--quiet", g.quiet, "only warnings and errors on the console");
}

}  // namespace

std::string precision_or_default(const GlobalOptions& globals) {
  return globals.precision.empty() ? "fp32" : globals.precision;
}

int run(int argc, char** argv) {
  CLI::App app{
      fmt::format("IRIS {}: in-context and promptable medical image segmentation", build::kVersion),
      "iris"};
  app.require_subcommand(0, 1);
  app.fallthrough();  // global options may follow the command name
  app.set_version_flag("--version", build::kVersion);
  GlobalOptions globals;
  add_global_options(app, globals);

  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (const Command& command : command_table()) {
    CLI::App* sub = app.add_subcommand(command.name, command.summary);
    if (command.setup) {
      runners.emplace_back(sub, command.setup(*sub, globals));
    } else {
      sub->fallthrough(false);  // keep its arguments: they belong to a future version
      sub->allow_extras();
      sub->prefix_command();
      const std::string name = command.name;
      runners.emplace_back(sub, [name]() -> int {
        throw NotAvailableError(
            fmt::format("'iris {}' is not available yet in IRIS {}; `iris --help` lists what is",
                        name, build::kVersion));
      });
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version (CallForHelp derives from Success)
  } catch (const CLI::ParseError& e) {
    throw UsageError(fmt::format("{}; run `iris --help` for usage", e.what()));
  }

  init_logging(parse_log_level(globals.log_level), globals.quiet);
  set_threads(globals.threads);
  resolve_device(globals.device);  // fail early on a bad or missing device
  if (globals.seed) torch::manual_seed(static_cast<std::uint64_t>(*globals.seed));

  for (auto& [sub, runner] : runners) {
    if (sub->parsed()) return runner();
  }
  std::cout << app.help();
  return 0;
}

}  // namespace iris::cli
