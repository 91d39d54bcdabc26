#include "cli/cmd_checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/model_state.h"

namespace iris::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kDefaultListLimit = 30;

std::string human_bytes(std::int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f} kB", b / 1e3);
  return fmt::format("{} B", bytes);
}

std::string shape_text(const at::Tensor& t) {
  return fmt::format("[{}]", fmt::join(t.sizes(), ", "));
}

struct InspectOptions {
  std::string file;
  std::string key;
  int limit = kDefaultListLimit;
  bool json = false;
};

int run_inspect(const InspectOptions& o, bool limit_given) {
  const auto ckpt = io::read_checkpoint(o.file);
  std::error_code ec;
  const auto file_bytes = static_cast<std::int64_t>(fs::file_size(o.file, ec));
  const char* format =
      ckpt.format == io::Checkpoint::Format::kSafetensors ? "safetensors" : "torch.save archive";

  // A checkpoint without a state dict is still worth listing; say why instead of failing.
  std::optional<io::StateDict> sd;
  std::string no_state_dict;
  try {
    sd = io::select_state_dict(ckpt.root, o.key, o.file);
  } catch (const InputError& e) {
    no_state_dict = e.what();
  }
  const auto match = sd ? io::match_model(*sd) : io::ModelMatch{};
  std::map<std::string, std::int64_t> dtypes;
  if (sd) {
    for (const auto& [name, t] : *sd) ++dtypes[io::dtype_name(t.scalar_type())];
  }
  // JSON lists every tensor unless --limit was given; text stops at the limit.
  const int limit = o.json && !limit_given ? 0 : o.limit;
  const std::size_t listed =
      sd ? (limit <= 0 ? sd->size() : std::min<std::size_t>(limit, sd->size())) : 0;

  if (o.json) {
    nlohmann::ordered_json j;
    j["file"] = o.file;
    j["format"] = ckpt.format == io::Checkpoint::Format::kSafetensors ? "safetensors" : "torch";
    j["file_bytes"] = file_bytes;
    j["top_level"] = nlohmann::ordered_json::array();
    if (ckpt.root.is_dict()) {
      for (const auto& [k, v] : ckpt.root.as_dict().items) {
        j["top_level"].push_back({{"key", k.is_string() ? k.as_string() : k.describe()},
                                  {"type", v.type_name()},
                                  {"description", v.describe()}});
      }
    }
    if (!ckpt.metadata.empty()) j["metadata"] = ckpt.metadata;
    j["model"] = {{"family", match.family},
                  {"size", match.size},
                  {"trunk_blocks", match.trunk_blocks},
                  {"embed_dim", match.embed_dim},
                  {"description", match.description()}};
    if (sd) {
      j["tensor_count"] = sd->size();
      j["elements"] = sd->numel();
      j["bytes"] = sd->nbytes();
      j["dtypes"] = dtypes;
      auto& tensors = j["tensors"] = nlohmann::ordered_json::array();
      for (std::size_t i = 0; i < listed; ++i) {
        const auto& [name, t] = sd->entries()[i];
        tensors.push_back({{"name", name},
                           {"shape", t.sizes().vec()},
                           {"dtype", io::dtype_name(t.scalar_type())}});
      }
    } else {
      j["state_dict_error"] = no_state_dict;
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }

  std::cout << fmt::format("file: {} ({}, {})\n", o.file, format, human_bytes(file_bytes));
  if (ckpt.root.is_dict()) {
    const auto& items = ckpt.root.as_dict().items;
    std::cout << fmt::format("top-level entries: {}\n", items.size());
    constexpr std::size_t kMaxTopLevel = 20;  // a flat state dict: the tensor table shows the rest
    for (std::size_t i = 0; i < items.size() && i < kMaxTopLevel; ++i) {
      const auto& [k, v] = items[i];
      std::cout << fmt::format("  {}: {}\n", k.is_string() ? k.as_string() : k.describe(),
                               v.describe());
    }
    if (items.size() > kMaxTopLevel)
      std::cout << fmt::format("  ... {} more\n", items.size() - kMaxTopLevel);
  } else {
    std::cout << fmt::format("top level: {}\n", ckpt.root.describe());
  }
  for (const auto& [k, v] : ckpt.metadata) std::cout << fmt::format("metadata: {} = {}\n", k, v);
  if (!sd) {
    std::cout << "state dict: none (" << no_state_dict << ")\n";
    return 0;
  }
  std::vector<std::string> dtype_counts;
  for (const auto& [name, n] : dtypes) dtype_counts.push_back(fmt::format("{} {}", name, n));
  std::cout << fmt::format("model: {}\n", match.description());
  std::cout << fmt::format("tensors: {}, elements: {} ({:.2f} M), bytes: {} ({})\n", sd->size(),
                           sd->numel(), sd->numel() / 1e6, sd->nbytes(), human_bytes(sd->nbytes()));
  std::cout << fmt::format("dtypes: {}\n", fmt::join(dtype_counts, ", "));
  std::size_t width = 4;
  for (std::size_t i = 0; i < listed; ++i) width = std::max(width, sd->entries()[i].first.size());
  for (std::size_t i = 0; i < listed; ++i) {
    const auto& [name, t] = sd->entries()[i];
    std::cout << fmt::format("  {:<{}}  {:<18}  {}\n", name, width, shape_text(t),
                             io::dtype_name(t.scalar_type()));
  }
  if (listed < sd->size()) {
    std::cout << fmt::format("  ... {} more (--limit 0 lists all)\n", sd->size() - listed);
  }
  return 0;
}

struct ConvertOptions {
  std::string input;
  std::string output;
  std::string key;
  bool flat = false;
  bool force = false;
};

int run_convert(const ConvertOptions& o) {
  const fs::path out(o.output);
  const std::string ext = out.extension().string();
  if (ext != ".safetensors" && ext != ".pt" && ext != ".pth" && ext != ".ckpt") {
    throw UsageError(
        fmt::format("{}: output must end in .safetensors, .pt, .pth or .ckpt", o.output));
  }
  std::error_code ec;
  if (fs::exists(out, ec) && !o.force) {
    throw InputError(file_message(o.output, "exists; pass --force to overwrite it"));
  }
  const auto ckpt = io::read_checkpoint(o.input);
  const auto sd = io::select_state_dict(ckpt.root, o.key, o.input);
  if (io::is_safetensors_path(out)) {
    auto metadata = ckpt.metadata;
    if (metadata.empty()) metadata["format"] = "pt";  // what Hugging Face loaders look for
    io::write_safetensors(out, sd, metadata);
  } else if (o.flat) {
    io::write_torch_checkpoint(out, io::state_dict_value(sd));
  } else {
    // {"model": state_dict}, the layout of the official SAM2 checkpoints.
    auto root = io::make_dict(false);
    root->set(o.key.empty() ? std::string("model") : o.key, io::state_dict_value(sd));
    io::write_torch_checkpoint(out, root);
  }
  std::cout << fmt::format("wrote {}: {} tensors, {} elements, {}\n", o.output, sd.size(),
                           sd.numel(),
                           human_bytes(static_cast<std::int64_t>(fs::file_size(out, ec))));
  return 0;
}

}  // namespace

std::function<int()> setup_checkpoint(CLI::App& app, const GlobalOptions&) {
  app.require_subcommand(1, 1);

  auto inspect = std::make_shared<InspectOptions>();
  CLI::App* inspect_cmd = app.add_subcommand(
      "inspect", "list tensors, sizes, top-level entries and the matching model");
  inspect_cmd->add_option("file", inspect->file, ".pt/.pth (torch.save) or .safetensors file")
      ->required();
  CLI::Option* limit_opt =
      inspect_cmd->add_option("--limit", inspect->limit, "tensors to list (0: all)")
          ->capture_default_str();
  inspect_cmd->add_option("--key", inspect->key,
                          "top-level entry holding the state dict (default: "
                          "the top level, else 'model' or 'state_dict')");
  inspect_cmd->add_flag("--json", inspect->json, "print JSON (all tensors unless --limit)");

  auto convert = std::make_shared<ConvertOptions>();
  CLI::App* convert_cmd = app.add_subcommand(
      "convert", "convert between .pt and .safetensors (by the file extensions)");
  convert_cmd->add_option("input", convert->input, "checkpoint to read")->required();
  convert_cmd
      ->add_option("output", convert->output, "file to write (.safetensors, .pt, .pth, .ckpt)")
      ->required();
  convert_cmd->add_option("--key", convert->key,
                          "entry holding the state dict, and the entry a .pt output puts it "
                          "under (default: model)");
  convert_cmd->add_flag("--flat", convert->flat, ".pt output: the state dict at the top level");
  convert_cmd->add_flag("--force", convert->force, "overwrite an existing output file");

  return [=]() -> int {
    if (inspect_cmd->parsed()) return run_inspect(*inspect, limit_opt->count() > 0);
    return run_convert(*convert);
  };
}

}  // namespace iris::cli
