#include "train/sam2_loss.h"

namespace iris {

at::Tensor sigmoid_focal_loss_per_mask(const at::Tensor& logits, const at::Tensor& targets,
                                       double alpha, double gamma) {
  const auto prob = logits.sigmoid();
  const auto ce = at::binary_cross_entropy_with_logits(logits, targets, {}, {}, at::Reduction::None);
  const auto p_t = prob * targets + (1 - prob) * (1 - targets);
  auto loss = ce * (1 - p_t).pow(gamma);
  if (alpha >= 0) loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss;
  return loss.flatten(2).mean(-1);
}

at::Tensor dice_loss_per_mask(const at::Tensor& logits, const at::Tensor& targets) {
  const auto p = logits.sigmoid().flatten(2);
  const auto g = targets.flatten(2);
  return 1 - (2 * (p * g).sum(-1) + 1) / (p.sum(-1) + g.sum(-1) + 1);
}

Sam2Loss sam2_frame_loss(const std::vector<Sam2StepOutput>& steps, const at::Tensor& targets,
                         const Sam2LossOptions& o) {
  TORCH_CHECK(targets.dim() == 3, "SAM2 loss: targets must be [N, H, W], got ", targets.sizes());
  TORCH_CHECK(!steps.empty(), "SAM2 loss: no prediction steps");
  const double num_objects = std::max<double>(1.0, static_cast<double>(targets.size(0)));
  const auto opts = steps.front().multimasks_high_res.options();
  Sam2Loss l;
  l.mask = torch::zeros({}, opts);
  l.dice = torch::zeros({}, opts);
  l.iou = torch::zeros({}, opts);
  l.cls = torch::zeros({}, opts);
  for (const auto& s : steps) {
    const auto& masks = s.multimasks_high_res;
    TORCH_CHECK(masks.dim() == 4 && masks.size(0) == targets.size(0) &&
                    masks.size(2) == targets.size(1) && masks.size(3) == targets.size(2),
                "SAM2 loss: masks ", masks.sizes(), " do not match targets ", targets.sizes());
    const auto target = targets.unsqueeze(1).to(masks.scalar_type()).expand_as(masks);
    const auto focal = sigmoid_focal_loss_per_mask(masks, target, o.focal_alpha, o.focal_gamma) / num_objects;
    const auto dice = dice_loss_per_mask(masks, target) / num_objects;
    at::Tensor target_obj, cls;
    if (o.pred_obj_scores) {
      target_obj = (target.select(1, 0) > 0).flatten(1).any(-1, /*keepdim=*/true).to(masks.scalar_type());
      const auto focal_obj = sigmoid_focal_loss_per_mask(
          s.object_score_logits.unsqueeze(-1).unsqueeze(-1), target_obj.unsqueeze(-1).unsqueeze(-1),
          o.focal_alpha_obj_score, o.focal_gamma_obj_score);  // [N, 1]
      cls = focal_obj.sum() / num_objects;
    } else {
      target_obj = torch::ones({masks.size(0), 1}, masks.options());
      cls = torch::zeros({}, masks.options());
    }
    // IoU of the binarised prediction with the truth, per mask.
    const auto pred = masks.flatten(2) > 0, gt = target.flatten(2) > 0;
    const auto actual = (pred & gt).sum(-1).to(torch::kFloat) /
                        (pred | gt).sum(-1).to(torch::kFloat).clamp_min(1.0);
    const auto iou_err = o.iou_use_l1_loss ? (s.ious - actual).abs() : (s.ious - actual).pow(2);
    const auto iou = iou_err / num_objects;  // [N, M]

    at::Tensor loss_mask = focal, loss_dice = dice, loss_iou = iou;
    if (focal.size(1) > 1) {
      const auto combo = focal * o.weight_mask + dice * o.weight_dice;
      const auto best = combo.argmin(-1);
      const auto rows = torch::arange(combo.size(0), best.options());
      loss_mask = focal.index({rows, best}).unsqueeze(1);
      loss_dice = dice.index({rows, best}).unsqueeze(1);
      loss_iou = o.supervise_all_iou ? iou.mean(-1).unsqueeze(1) : iou.index({rows, best}).unsqueeze(1);
    }
    l.mask = l.mask + (loss_mask * target_obj).sum();
    l.dice = l.dice + (loss_dice * target_obj).sum();
    l.iou = l.iou + (loss_iou * target_obj).sum();
    l.cls = l.cls + cls;
  }
  l.total = o.weight_mask * l.mask + o.weight_dice * l.dice + o.weight_iou * l.iou + o.weight_class * l.cls;
  return l;
}

}  // namespace iris
