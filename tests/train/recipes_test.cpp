#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "models/iris/iris_model.h"
#include "models/sam2/sam2_config.h"
#include "models/sam2/sam2_model.h"
#include "train/recipes.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
namespace sam2 = models::sam2;

fs::path micro_config() {
  return fs::path(IRIS_SOURCE_DIR) / ".." / "shared" / "fixtures" / "sam2" / "micro_seed0" /
         "config.yaml";
}

TEST(Recipes, ParseNamesAndErrors) {
  const auto& g = sam2_parameter_groups();
  EXPECT_EQ(parse_recipe("mem+md+pe+ie", g).name(), "mem+md+pe+ie");
  EXPECT_EQ(parse_recipe("none", g).groups.size(), 0u);
  EXPECT_EQ(parse_recipe("", g).name(), "none");
  try {
    parse_recipe("md+pf", g);
    FAIL();
  } catch (const UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown part 'pf'"), std::string::npos) << m;
    EXPECT_NE(m.find("did you mean 'pe'"), std::string::npos) << m;
    EXPECT_NE(m.find("ie, pe, md, mem"), std::string::npos) << m;
  }
  EXPECT_THROW(parse_recipe("md+md", g), UsageError);
  EXPECT_THROW(parse_recipe("md+", g), UsageError);
  EXPECT_THROW(parse_recipe("decoder", g), UsageError);
  EXPECT_EQ(parse_recipe("decoder+encoder", iris_parameter_groups()).name(), "decoder+encoder");
}

TEST(Recipes, EveryOfficialSam2ParameterHasExactlyOneGroup) {
  sam2::Sam2Model model(sam2::official_sam2_options("tiny"));
  const auto a = apply_recipe(*model, sam2_parameter_groups(), parse_recipe("md", sam2_parameter_groups()));
  int64_t total = 0, image_encoder = 0;
  for (const auto& p : model->named_parameters()) {
    total += p.value().numel();
    if (p.key().rfind("image_encoder.", 0) == 0) image_encoder += p.value().numel();
  }
  int64_t grouped = 0;
  for (const auto& [name, n] : a.group_elements) grouped += n;
  EXPECT_EQ(grouped, total);
  EXPECT_EQ(a.group_elements.at("ie"), image_encoder);
  EXPECT_EQ(a.trainable_elements, a.group_elements.at("md"));
  EXPECT_EQ(a.trainable_elements + a.frozen_elements, total);
  // The parameters SAM2Base owns directly are assigned on purpose, not left trainable.
  const auto& g = sam2_parameter_groups();
  EXPECT_EQ(g.group_of("maskmem_tpos_enc"), "mem");
  EXPECT_EQ(g.group_of("no_mem_embed"), "mem");
  EXPECT_EQ(g.group_of("obj_ptr_tpos_proj.weight"), "mem");
  EXPECT_EQ(g.group_of("obj_ptr_proj.layers.0.weight"), "md");
  EXPECT_EQ(g.group_of("no_obj_ptr"), "md");
  EXPECT_EQ(g.group_of("mask_downsample.weight"), "pe");
  EXPECT_THROW(g.group_of("something_new"), InputError);
}

// One real training step of two frames (a boxed frame 0 encoded into memory, frame 1 tracked
// through it): the recipe's groups change, every other parameter is bitwise unchanged, and with
// `mem` the memory encoder receives gradients through the memory bank.
TEST(Recipes, EachRecipeTrainsExactlyItsGroups) {
  if (!fs::exists(micro_config())) GTEST_SKIP() << "needs ../shared/fixtures/sam2";
  const auto options = sam2::load_sam2_config(micro_config());
  const auto& groups = sam2_parameter_groups();
  for (const std::string text :
       {"mem", "mem+md", "mem+md+pe", "md", "md+pe", "md+pe+ie", "mem+md+pe+ie", "ie", "none"}) {
    SCOPED_TRACE(text);
    torch::manual_seed(0);
    sam2::Sam2Model model(options);
    model->train();
    const auto recipe = parse_recipe(text, groups);
    const auto applied = apply_recipe(*model, groups, recipe);
    std::map<std::string, at::Tensor> before;
    for (const auto& p : model->named_parameters()) before[p.key()] = p.value().detach().clone();

    torch::manual_seed(1);
    const int64_t s = options.image_size;
    const auto frames = torch::randn({2, 3, s, s});
    const auto target = torch::zeros({1, 1, s, s});
    target.slice(2, s / 4, s / 2).slice(3, s / 4, s / 2).fill_(1.0);
    sam2::ObjectMemory memory;
    sam2::PointInputs box{torch::tensor({{{float(s) / 4, float(s) / 4}, {float(s) / 2, float(s) / 2}}}),
                          torch::tensor({{2, 3}}, torch::kInt32)};
    auto f0 = model->prepare_backbone_features(model->forward_image(frames.slice(0, 0, 1)));
    auto out0 = model->track_step(0, true, f0, box, at::Tensor(), memory, 2, false, true);
    memory.set_cond(0, out0);
    auto f1 = model->prepare_backbone_features(model->forward_image(frames.slice(0, 1, 2)));
    auto out1 = model->track_step(1, false, f1, std::nullopt, at::Tensor(), memory, 2, false, true);
    const auto loss =
        torch::binary_cross_entropy_with_logits(out0.pred_masks_high_res, target) +
        torch::binary_cross_entropy_with_logits(out1.pred_masks_high_res, target) +
        out1.object_score_logits.sum() * 0.1;

    std::vector<at::Tensor> trainable;
    for (const auto& p : model->parameters()) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    EXPECT_EQ(static_cast<int64_t>(trainable.size()), static_cast<int64_t>(applied.trainable.size()));
    if (trainable.empty()) {
      EXPECT_FALSE(loss.requires_grad());
    } else {
      torch::optim::AdamW opt(trainable, torch::optim::AdamWOptions(1e-2));
      loss.backward();
      if (recipe.trains("mem")) {
        double g = 0;
        for (const auto& p : model->memory_encoder->parameters()) {
          if (p.grad().defined()) g += p.grad().abs().sum().item<double>();
        }
        EXPECT_GT(g, 0.0) << "the memory encoder must learn when mem trains";
      }
      opt.step();
    }
    std::set<std::string> changed_groups;
    for (const auto& p : model->named_parameters()) {
      const auto& group = groups.group_of(p.key());
      const bool same = torch::equal(p.value(), before[p.key()]);
      if (!recipe.trains(group)) {
        EXPECT_TRUE(same) << p.key() << " (" << group << ") changed under recipe " << text;
      } else if (!same) {
        changed_groups.insert(group);
      }
    }
    for (const auto& g : recipe.groups) EXPECT_TRUE(changed_groups.count(g)) << g << " did not train";
  }
}

TEST(Recipes, IrisGroupsCoverTheModel) {
  models::IrisOptions o;
  o.spatial_dims = 2;
  models::IrisModel model(o);
  const auto a = apply_recipe(*model, iris_parameter_groups(),
                              parse_recipe("decoder", iris_parameter_groups()));
  EXPECT_GT(a.group_elements.at("encoder"), 0);
  EXPECT_GT(a.group_elements.at("task_encoder"), 0);
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().requires_grad(), p.key().rfind("decoder.", 0) == 0) << p.key();
  }
}

}  // namespace
}  // namespace iris
