#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "test_util.h"
#include "train/sam2_loss.h"

namespace iris {
namespace {

TEST(Sam2Loss, HandComputedPieces) {
  // A confident correct mask has ~0 focal and Dice loss; the object-score loss is the BCE.
  auto target = torch::zeros({1, 4, 4});
  target.slice(1, 0, 2).fill_(1.0);
  const auto logits = (target.unsqueeze(1) * 2 - 1) * 30;
  EXPECT_NEAR(sigmoid_focal_loss_per_mask(logits, target.unsqueeze(1), 0.25, 2.0).item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(dice_loss_per_mask(logits, target.unsqueeze(1)).item<double>(), 0.0, 1e-6);
  Sam2StepOutput s{logits, torch::ones({1, 1}), torch::zeros({1, 1})};
  const auto l = sam2_frame_loss({s}, target);
  EXPECT_NEAR(l.cls.item<double>(), std::log(2.0), 1e-6);
  EXPECT_NEAR(l.iou.item<double>(), 0.0, 1e-6);  // predicted IoU 1 = actual IoU 1
  // An absent object gets no mask loss, only the object-score loss.
  const auto absent = sam2_frame_loss({s}, torch::zeros({1, 4, 4}));
  EXPECT_DOUBLE_EQ(absent.mask.item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(absent.dice.item<double>(), 0.0);
}

TEST(Sam2Loss, MatchesTheOfficialTrainingLoss) {
  if (test::venv_python().empty()) GTEST_SKIP() << "needs .venv/bin/python";
  test::TempDir dir;
  const auto r = test::run_command("'" + test::venv_python().string() + "' '" + IRIS_SOURCE_DIR +
                                   "/tests/train/sam2_loss_reference.py' '" +
                                   (dir / "ref.safetensors").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = io::read_safetensors(dir / "ref.safetensors").tensors;
  auto get = [&](const std::string& k) { return *ref.find(k); };
  struct Case {
    std::string name;
    int steps;
    bool l1, all_iou;
  };
  for (const auto& c : {Case{"a", 1, true, true}, Case{"b", 2, false, false}, Case{"c", 2, false, false}}) {
    SCOPED_TRACE(c.name);
    std::vector<Sam2StepOutput> steps;
    for (int s = 0; s < c.steps; ++s) {
      const auto i = std::to_string(s);
      steps.push_back({get(c.name + "_masks_" + i), get(c.name + "_ious_" + i),
                       get(c.name + "_scores_" + i)});
    }
    Sam2LossOptions o;
    o.iou_use_l1_loss = c.l1;
    o.supervise_all_iou = c.all_iou;
    const auto l = sam2_frame_loss(steps, get("targets"), o);
    EXPECT_NEAR(l.mask.item<double>(), get(c.name + "_loss_mask").item<double>(), 1e-5);
    EXPECT_NEAR(l.dice.item<double>(), get(c.name + "_loss_dice").item<double>(), 1e-5);
    EXPECT_NEAR(l.iou.item<double>(), get(c.name + "_loss_iou").item<double>(), 1e-5);
    EXPECT_NEAR(l.cls.item<double>(), get(c.name + "_loss_class").item<double>(), 1e-5);
    EXPECT_NEAR(l.total.item<double>(), get(c.name + "_core_loss").item<double>(), 1e-4);
  }
}

}  // namespace
}  // namespace iris
