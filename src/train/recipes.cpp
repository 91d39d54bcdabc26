#include "train/recipes.h"

#include <algorithm>
#include <set>

#include "core/config.h"
#include "core/error.h"

namespace iris {

ParameterGroups::ParameterGroups(std::string model, std::vector<ParameterGroup> groups)
    : model_(std::move(model)), groups_(std::move(groups)) {}

const std::string& ParameterGroups::group_of(const std::string& parameter) const {
  for (const auto& g : groups_) {
    for (const auto& m : g.members) {
      const bool prefix = !m.empty() && m.back() == '.';
      if (prefix ? parameter.rfind(m, 0) == 0 : parameter == m) return g.name;
    }
  }
  throw InputError(model_ + " parameter '" + parameter +
                   "' belongs to no parameter group; every parameter must be assigned");
}

std::vector<std::string> ParameterGroups::names() const {
  std::vector<std::string> n;
  for (const auto& g : groups_) n.push_back(g.name);
  return n;
}

const ParameterGroups& sam2_parameter_groups() {
  static const ParameterGroups groups(
      "SAM2",
      {{"ie", "image encoder (Hiera trunk, FPN neck)", {"image_encoder."}},
       {"pe", "prompt encoder and the mask-prompt downsampler", {"sam_prompt_encoder.", "mask_downsample."}},
       {"md",
        "mask decoder (two-way transformer, high-res projections, IoU and object-score heads), "
        "object-pointer projection, no-object pointer",
        {"sam_mask_decoder.", "obj_ptr_proj.", "no_obj_ptr"}},
       {"mem",
        "memory attention, memory encoder, memory temporal encodings, no-memory embeddings, "
        "spatial no-object embedding, pointer temporal projection",
        {"memory_attention.", "memory_encoder.", "maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc",
         "no_obj_embed_spatial", "obj_ptr_tpos_proj."}}});
  return groups;
}

const ParameterGroups& iris_parameter_groups() {
  static const ParameterGroups groups(
      "IRIS", {{"encoder", "image encoder (residual UNet encoder)", {"encoder."}},
               {"task_encoder", "task encoding (foreground pooling, query tokens)", {"task_encoder."}},
               {"decoder", "mask decoder (cross-attention, upsampling path)", {"decoder."}}});
  return groups;
}

std::string Recipe::name() const {
  if (groups.empty()) return "none";
  std::string n;
  for (const auto& g : groups) n += (n.empty() ? "" : "+") + g;
  return n;
}

bool Recipe::trains(const std::string& group) const {
  return std::find(groups.begin(), groups.end(), group) != groups.end();
}

Recipe parse_recipe(const std::string& text, const ParameterGroups& groups) {
  Recipe r;
  if (text.empty() || text == "none") return r;
  const auto valid = groups.names();
  std::string valid_list;
  for (const auto& v : valid) valid_list += (valid_list.empty() ? "" : ", ") + v;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('+', start), text.size());
    const std::string token = text.substr(start, end - start);
    if (std::find(valid.begin(), valid.end(), token) == valid.end()) {
      std::string msg = "recipe '" + text + "': unknown part '" + token + "'";
      if (auto m = closest_match(token, valid)) msg += " (did you mean '" + *m + "'?)";
      throw UsageError(msg + "; " + groups.model() + " parts: " + valid_list);
    }
    if (r.trains(token)) throw UsageError("recipe '" + text + "': '" + token + "' is given twice");
    r.groups.push_back(token);
    start = end + 1;
  }
  return r;
}

RecipeApplication apply_recipe(torch::nn::Module& module, const ParameterGroups& groups,
                               const Recipe& recipe) {
  RecipeApplication a;
  a.recipe = recipe.name();
  for (const auto& g : groups.groups()) a.group_elements[g.name] = 0;
  const auto params = module.named_parameters(/*recurse=*/true);
  // Resolve every group first so an unassigned parameter leaves the module untouched.
  std::vector<std::pair<at::Tensor, bool>> plan;
  for (const auto& p : params) {
    const auto& group = groups.group_of(p.key());
    const bool train = recipe.trains(group);
    plan.emplace_back(p.value(), train);
    a.group_elements[group] += p.value().numel();
    if (train) {
      a.trainable.push_back(p.key());
      a.trainable_elements += p.value().numel();
    } else {
      a.frozen_elements += p.value().numel();
    }
  }
  for (auto& [t, train] : plan) t.set_requires_grad(train);
  return a;
}

}  // namespace iris
