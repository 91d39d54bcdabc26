"""Random masks and MONAI's metrics on them (reference data for tests only).

usage: monai_reference.py OUT.safetensors
"""
import sys

import torch
from monai.metrics import (compute_dice, compute_hausdorff_distance, compute_iou,
                           compute_surface_dice)
from safetensors.torch import save_file


def blobs(gen, b, c, h, w):
    """Random rectangles and discs, with some empty channels."""
    out = torch.zeros(b, c, h, w, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(b):
        for j in range(c):
            if torch.rand(1, generator=gen).item() < 0.2:
                continue
            for _ in range(int(torch.randint(1, 3, (1,), generator=gen))):
                cy, cx = torch.randint(0, h, (1,), generator=gen).item(), torch.randint(0, w, (1,), generator=gen).item()
                r = torch.randint(2, 9, (1,), generator=gen).item()
                out[i, j] |= ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
    return out


def main():
    gen = torch.Generator().manual_seed(0)
    pred = blobs(gen, 4, 3, 40, 48)
    truth = blobs(gen, 4, 3, 40, 48)
    # Make prediction overlap the truth in some channels.
    pred[0, 1] = truth[0, 1]
    pred[1, 2] = torch.roll(truth[1, 2], 2, dims=1)
    ref = {"pred": pred.to(torch.uint8), "truth": truth.to(torch.uint8)}
    p, t = pred.float(), truth.float()
    for bg in (True, False):
        for ie in (True, False):
            tag = f"{int(bg)}{int(ie)}"
            ref[f"dice_{tag}"] = compute_dice(p, t, include_background=bg, ignore_empty=ie).double()
            ref[f"iou_{tag}"] = compute_iou(p, t, include_background=bg, ignore_empty=ie).double()
    spacing = [0.7, 1.3]
    ref["nsd_t2"] = compute_surface_dice(p, t, [2.0] * 3, include_background=True).double()
    ref["nsd_t1_spacing"] = compute_surface_dice(p, t, [1.0] * 3, include_background=True,
                                                 spacing=spacing).double()
    ref["hd95"] = compute_hausdorff_distance(p, t, include_background=True, percentile=95).double()
    ref["hd95_spacing"] = compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                                     spacing=spacing).double()
    save_file({k: v.contiguous() for k, v in ref.items()}, sys.argv[1])


if __name__ == "__main__":
    main()
