#include "io/model_state.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "core/error.h"

namespace iris::io {
namespace {

constexpr std::size_t kMaxListed = 10;

template <typename T, typename F>
std::string listing(const std::vector<T>& items, F&& show) {
  std::vector<std::string> shown;
  for (std::size_t i = 0; i < items.size() && i < kMaxListed; ++i) shown.push_back(show(items[i]));
  std::string out = fmt::format("{}", fmt::join(shown, ", "));
  if (items.size() > kMaxListed) out += fmt::format(", ... and {} more", items.size() - kMaxListed);
  return out;
}

// Hiera trunk signatures of the official sizes (blocks, patch-embed channels).
struct HieraSize {
  const char* name;
  std::int64_t blocks;
  std::int64_t embed_dim;
};
constexpr HieraSize kHieraSizes[] = {
    {"tiny", 12, 96}, {"small", 16, 96}, {"base_plus", 24, 112}, {"large", 48, 144}};

constexpr std::string_view kTrunkBlocks = "image_encoder.trunk.blocks.";
constexpr std::string_view kPatchEmbed = "image_encoder.trunk.patch_embed.proj.weight";

bool has_prefix(const StateDict& sd, std::string_view prefix) {
  for (const auto& [name, t] : sd) {
    if (name.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace

std::string LoadReport::summary() const {
  std::vector<std::string> parts;
  const auto name = [](const std::string& s) { return s; };
  if (!missing.empty())
    parts.push_back(fmt::format("{} missing: {}", missing.size(), listing(missing, name)));
  if (!unexpected.empty()) {
    parts.push_back(fmt::format("{} unexpected: {}", unexpected.size(), listing(unexpected, name)));
  }
  if (!mismatched.empty()) {
    parts.push_back(fmt::format(
        "{} mis-shaped: {}", mismatched.size(), listing(mismatched, [](const ShapeMismatch& m) {
          return fmt::format("{} (checkpoint [{}], model [{}])", m.name,
                             fmt::join(m.checkpoint_shape, ", "), fmt::join(m.model_shape, ", "));
        })));
  }
  return parts.empty() ? "all keys match" : fmt::format("{}", fmt::join(parts, "; "));
}

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& sd, bool strict) {
  // Parameters and buffers by name; buffers like BatchNorm's running stats are state too.
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    targets.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    targets.emplace_back(item.key(), item.value());

  LoadReport report;
  std::set<std::string> model_keys;
  std::vector<std::pair<at::Tensor, const at::Tensor*>> copies;
  for (const auto& [name, target] : targets) {
    model_keys.insert(name);
    const at::Tensor* source = sd.find(name);
    if (!source) {
      report.missing.push_back(name);
    } else if (source->sizes() != target.sizes()) {
      report.mismatched.push_back({name, source->sizes().vec(), target.sizes().vec()});
    } else {
      copies.emplace_back(target, source);
    }
  }
  for (const auto& [name, t] : sd) {
    if (!model_keys.count(name)) report.unexpected.push_back(name);
  }
  if (strict && !report.clean()) {
    throw InputError(fmt::format("checkpoint does not match the model: {}", report.summary()));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(*source);
  report.loaded = copies.size();
  return report;
}

std::string ModelMatch::description() const {
  if (family == "unknown") return "unknown model";
  const std::string name = family == "sam2.1" ? "SAM2.1" : "SAM2";
  if (size == "unknown") {
    return fmt::format("{}, unknown size (Hiera trunk: {} blocks, embed dim {})", name,
                       trunk_blocks, embed_dim);
  }
  return fmt::format("{} Hiera {} ({} blocks, embed dim {})", name, size, trunk_blocks, embed_dim);
}

ModelMatch match_model(const StateDict& sd) {
  ModelMatch m;
  const at::Tensor* patch = sd.find(kPatchEmbed);
  if (!patch || patch->dim() != 4 || !has_prefix(sd, "sam_mask_decoder.")) return m;
  m.embed_dim = patch->size(0);
  // Blocks: one past the highest index under image_encoder.trunk.blocks.<i>.
  for (const auto& [name, t] : sd) {
    if (!name.starts_with(kTrunkBlocks)) continue;
    const std::string rest = name.substr(kTrunkBlocks.size());
    std::int64_t index = 0;
    std::size_t digits = 0;
    while (digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[digits]))) {
      index = index * 10 + (rest[digits] - '0');
      if (++digits > 6) break;
    }
    if (digits > 0 && digits <= 6) m.trunk_blocks = std::max(m.trunk_blocks, index + 1);
  }
  // SAM2.1 added the object-pointer temporal projection and the no-object spatial embedding.
  m.family = sd.contains("no_obj_embed_spatial") && has_prefix(sd, "obj_ptr_tpos_proj.") ? "sam2.1"
                                                                                         : "sam2";
  for (const auto& s : kHieraSizes) {
    if (s.blocks == m.trunk_blocks && s.embed_dim == m.embed_dim) m.size = s.name;
  }
  return m;
}

}  // namespace iris::io
