#include "cli/cmd_data.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>

#include "data/inspect.h"

namespace iris::cli {

std::function<int()> setup_data(CLI::App& app, const GlobalOptions&) {
  app.require_subcommand(1);
  struct Options {
    std::string path;
    bool all = false;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* inspect = app.add_subcommand("inspect", "detect a dataset layout and list classes and problems");
  inspect->add_option("PATH", options->path, "a dataset folder or a volume file")->required();
  inspect->add_flag("--all", options->all, "list every class");
  inspect->add_flag("--json", options->json, "print JSON instead of text");
  return [options] {
    const InspectReport report = inspect_path(options->path);
    if (options->json) {
      std::cout << report.to_json().dump(2) << "\n";
    } else {
      std::cout << report.to_text(options->all ? SIZE_MAX : 12);
    }
    return 0;
  };
}

}  // namespace iris::cli
