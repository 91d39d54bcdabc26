// Recipes: which parts of a model train. A model declares named parameter groups; a recipe is a
// `+`-joined set of group names (`md+pe`), everything else frozen. Every parameter belongs to
// exactly one group, so nothing trains by accident.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace iris {

struct ParameterGroup {
  std::string name;         // recipe token, e.g. "md"
  std::string description;  // what it holds, for listings
  // Parameter names: an entry ending in '.' matches a prefix, any other entry one exact name.
  std::vector<std::string> members;
};

class ParameterGroups {
 public:
  ParameterGroups(std::string model, std::vector<ParameterGroup> groups);
  // The group of a parameter name; throws InputError naming the parameter when none claims it.
  const std::string& group_of(const std::string& parameter) const;
  const std::vector<ParameterGroup>& groups() const { return groups_; }
  const std::string& model() const { return model_; }
  std::vector<std::string> names() const;

 private:
  std::string model_;
  std::vector<ParameterGroup> groups_;
};

// SAM2/SAM2.1: ie = image encoder; pe = prompt encoder + the mask-prompt downsampler; md = mask
// decoder (with its high-res projections, IoU and object-score heads) + the object-pointer
// projection and the no-object pointer; mem = memory attention + memory encoder + temporal
// encodings, no-memory embeddings, the spatial no-object embedding and the pointer temporal
// projection.
const ParameterGroups& sam2_parameter_groups();
// IRIS: encoder, task_encoder, decoder.
const ParameterGroups& iris_parameter_groups();

struct Recipe {
  std::vector<std::string> groups;  // in the order given; empty = nothing trains (baseline)
  std::string name() const;         // "md+pe", or "none"
  bool trains(const std::string& group) const;
};

// "md+pe+ie" -> Recipe; "none" or "" -> the untrained baseline. UsageError for an unknown or
// repeated token, naming it, the closest group and all valid ones.
Recipe parse_recipe(const std::string& text, const ParameterGroups& groups);

struct RecipeApplication {
  std::string recipe;
  std::vector<std::string> trainable;        // parameter names, model order
  std::map<std::string, int64_t> group_elements;  // elements per group (all groups)
  int64_t trainable_elements = 0;
  int64_t frozen_elements = 0;
};

// Sets requires_grad on every parameter of `module` (true iff its group is in the recipe) and
// reports what trains. Throws InputError if a parameter belongs to no group.
RecipeApplication apply_recipe(torch::nn::Module& module, const ParameterGroups& groups,
                               const Recipe& recipe);

}  // namespace iris
