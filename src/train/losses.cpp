#include "train/losses.h"

namespace iris {

at::Tensor soft_dice_loss(const at::Tensor& logits, const at::Tensor& targets) {
  TORCH_CHECK(logits.sizes() == targets.sizes(), "dice loss: logits ", logits.sizes(), " and targets ",
              targets.sizes(), " differ");
  const at::Tensor p = at::sigmoid(logits).flatten(2);
  const at::Tensor g = targets.to(p.scalar_type()).flatten(2);
  const at::Tensor dice = (2 * (p * g).sum(-1) + 1) / (p.sum(-1) + g.sum(-1) + 1);
  return 1 - dice.mean();
}

at::Tensor bce_loss(const at::Tensor& logits, const at::Tensor& targets) {
  return at::binary_cross_entropy_with_logits(logits, targets.to(logits.scalar_type()));
}

at::Tensor hard_dice(const at::Tensor& logits, const at::Tensor& targets) {
  const at::Tensor p = (logits > 0).flatten(2).to(at::kFloat);
  const at::Tensor g = (targets > 0.5).flatten(2).to(at::kFloat);
  const at::Tensor inter = (p * g).sum(-1), total = p.sum(-1) + g.sum(-1);
  return at::where(total > 0, 2 * inter / total.clamp_min(1), at::ones_like(total));
}

}  // namespace iris
