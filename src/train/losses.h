// Segmentation losses on per-class logits (sigmoid per class, so classes may overlap or be absent).
#pragma once

#include <ATen/core/Tensor.h>

namespace iris {

// Soft Dice loss per (batch, class), averaged: 1 - (2·Σpg + s) / (Σp + Σg + s), s = 1. A class
// absent from the target and predicted absent costs ~0, predicted present costs ~1: "absent"
// is learned rather than ignored. logits, targets: [B, K, *S].
at::Tensor soft_dice_loss(const at::Tensor& logits, const at::Tensor& targets);

// Mean binary cross-entropy with logits over all voxels and classes.
at::Tensor bce_loss(const at::Tensor& logits, const at::Tensor& targets);

// Hard Dice per (batch, class) of sigmoid(logits) > 0.5 against targets: [B, K]. Both empty
// gives 1 (a correct "absent").
at::Tensor hard_dice(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace iris
