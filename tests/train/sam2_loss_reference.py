"""Random SAM2 predictions and the official training loss on them (reference data for tests only).

usage: sam2_loss_reference.py OUT.safetensors
"""
import sys

import types

import torch
from safetensors.torch import save_file

# training.trainer pulls in the whole training stack (tensordict, ...); the loss needs only its
# CORE_LOSS_KEY, so provide that module alone.
_trainer = types.ModuleType("training.trainer")
_trainer.CORE_LOSS_KEY = "core_loss"
sys.modules["training.trainer"] = _trainer
from training.loss_fns import MultiStepMultiMasksAndIous  # noqa: E402


def main():
    torch.manual_seed(0)
    out = {}
    n, h, w = 3, 24, 20
    targets = torch.zeros(n, h, w)
    targets[0, 4:12, 5:15] = 1
    targets[1, 10:20, 2:9] = 1  # object 2 present, object 3 absent
    out["targets"] = targets
    for case, (steps, m, l1, all_iou) in {"a": (1, 3, True, True), "b": (2, 1, False, False),
                                          "c": (2, 3, False, False)}.items():
        masks = [torch.randn(n, m, h, w) * 3 for _ in range(steps)]
        ious = [torch.rand(n, m) for _ in range(steps)]
        scores = [torch.randn(n, 1) * 2 for _ in range(steps)]
        loss = MultiStepMultiMasksAndIous(
            weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
            supervise_all_iou=all_iou, iou_use_l1_loss=l1, pred_obj_scores=True,
            focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1.0)
        outs = {"multistep_pred_multimasks_high_res": masks, "multistep_pred_ious": ious,
                "multistep_object_score_logits": scores}
        losses = loss([outs], targets[None])
        for s in range(steps):
            out[f"{case}_masks_{s}"] = masks[s]
            out[f"{case}_ious_{s}"] = ious[s]
            out[f"{case}_scores_{s}"] = scores[s]
        for k in ("loss_mask", "loss_dice", "loss_iou", "loss_class", "core_loss"):
            out[f"{case}_{k}"] = torch.as_tensor(losses[k], dtype=torch.float32).reshape(1)
    save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[1])


if __name__ == "__main__":
    main()
