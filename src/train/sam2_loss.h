// SAM2's fine-tuning loss (the official MultiStepMultiMasksAndIous): per prediction step, focal +
// Dice on the best of the multimask outputs, IoU-prediction regression, object-score loss;
// mask losses count only where the object is present.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace iris {

struct Sam2LossOptions {
  double weight_mask = 20.0;  // focal loss
  double weight_dice = 1.0;
  double weight_iou = 1.0;
  double weight_class = 1.0;  // object score
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
  bool supervise_all_iou = true;
  bool iou_use_l1_loss = true;
  bool pred_obj_scores = true;
  double focal_alpha_obj_score = -1.0;
  double focal_gamma_obj_score = 0.0;
};

// One prediction step of one frame for N objects.
struct Sam2StepOutput {
  at::Tensor multimasks_high_res;  // [N, M, H, W] logits
  at::Tensor ious;                 // [N, M]
  at::Tensor object_score_logits;  // [N, 1]
};

struct Sam2Loss {
  at::Tensor mask, dice, iou, cls;  // unweighted sums over steps
  at::Tensor total;                 // weighted sum
};

// targets: [N, H, W] in {0, 1}; steps: the frame's prediction steps (1 without correction
// clicks). Losses are divided by max(N, 1), as the official code does on one process.
Sam2Loss sam2_frame_loss(const std::vector<Sam2StepOutput>& steps, const at::Tensor& targets,
                         const Sam2LossOptions& options = {});

// [N, M, H, W] -> [N, M]: mean focal loss per mask (alpha < 0: no weighting).
at::Tensor sigmoid_focal_loss_per_mask(const at::Tensor& logits, const at::Tensor& targets,
                                       double alpha, double gamma);
// [N, M, H, W] -> [N, M]: 1 - (2·Σpg + 1) / (Σp + Σg + 1) with p = sigmoid(logits).
at::Tensor dice_loss_per_mask(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace iris
