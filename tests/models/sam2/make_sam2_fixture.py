"""Writes a SAM2 parity fixture with the official `sam2` package (reference data for tests only).

The fixture has the form `iris sam2 verify` reads: config.yaml, checkpoint.pt ({"model": state
dict}), prompts.json, fixture.json and expected.pt (frames, image features of frame 0, each
prompt's output, logits propagated through the clip).

usage: make_sam2_fixture.py CONFIG OUT_DIR [--seed S] [--frames T] [--prompts points,box,mask]
"""
import argparse
import json
import os

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sam2.sam2_video_predictor as video_predictor

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def synthetic_clip(frames, size, gen):
    """A textured background with a bright disc moving left to right; returns frames and masks."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = 0.3 + 0.1 * torch.rand(3, size, size, generator=gen)
    images, masks = [], []
    for t in range(frames):
        cx = size * (0.25 + 0.5 * t / max(frames - 1, 1))
        cy = size * 0.55
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (size * 0.15) ** 2
        img = base.clone()
        img[:, disc] = torch.tensor([0.9, 0.5, 0.4]).view(3, 1)
        images.append(img)
        masks.append(disc.float())
    return torch.stack(images), torch.stack(masks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--prompts", default="points,box,mask")
    ap.add_argument("--set", action="append", default=[],
                    help="override a config field, e.g. model.no_obj_embed_spatial=false")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = OmegaConf.load(args.config)
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    model = instantiate(cfg.model, _recursive_=True).eval()
    size = model.image_size

    # The official predictor keeps memories in bf16 and, without autocast on the CPU, would feed
    # them to fp32 layers; use them as fp32 (after the bf16 rounding) as the GPU path does.
    attend = model.memory_attention.forward

    def attend_fp32(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return attend(curr=curr, memory=memory.float(), curr_pos=curr_pos,
                      memory_pos=memory_pos.float(), num_obj_ptr_tokens=num_obj_ptr_tokens)

    model.memory_attention.forward = attend_fp32

    frames01, gt = synthetic_clip(args.frames, size, gen)
    normalized = (frames01 - MEAN) / STD
    video_predictor.load_video_frames = lambda **kw: (normalized, size, size)

    kinds = args.prompts.split(",")
    prompts = []
    for i, kind in enumerate(kinds):
        obj_id, frame = i + 1, min(i, args.frames - 1) if kind == "mask" else 0
        if kind == "points":
            prompts.append({"obj_id": obj_id, "frame": frame, "type": "points",
                            "points_xy": [[0.3, 0.55], [0.8, 0.2]], "labels": [1, 0]})
        elif kind == "point":
            prompts.append({"obj_id": obj_id, "frame": frame, "type": "points",
                            "points_xy": [[0.3, 0.55]], "labels": [1]})
        elif kind == "box":
            prompts.append({"obj_id": obj_id, "frame": frame, "type": "box",
                            "box_xyxy": [0.1, 0.4, 0.45, 0.7]})
        elif kind == "mask":
            prompts.append({"obj_id": obj_id, "frame": frame, "type": "mask",
                            "mask_from_gt_frame": frame})
        else:
            raise SystemExit(f"unknown prompt kind {kind}")

    expected = {"frames_01": frames01, "frames_normalized": normalized, "gt_masks": gt}
    with torch.inference_mode():
        out = model.forward_image(normalized[0:1])
        for i, t in enumerate(out["backbone_fpn"]):
            expected[f"image/backbone_fpn_{i}"] = t.clone()
        for i, t in enumerate(out["vision_pos_enc"]):
            expected[f"image/vision_pos_enc_{i}"] = t.clone()
        state = model.init_state("synthetic")
        for p in prompts:
            if p["type"] == "points":
                xy = torch.tensor(p["points_xy"], dtype=torch.float32) * size
                p["points_xy_pixels"] = xy.tolist()
                _, ids, masks = model.add_new_points_or_box(
                    state, p["frame"], p["obj_id"], points=xy, labels=torch.tensor(p["labels"]))
            elif p["type"] == "box":
                box = torch.tensor(p["box_xyxy"], dtype=torch.float32) * size
                p["box_xyxy_pixels"] = box.tolist()
                _, ids, masks = model.add_new_points_or_box(state, p["frame"], p["obj_id"], box=box)
            else:
                _, ids, masks = model.add_new_mask(state, p["frame"], p["obj_id"],
                                                   gt[p["mask_from_gt_frame"]] > 0.5)
            idx = list(ids).index(p["obj_id"])
            expected[f"video/prompt_{p['obj_id']}_frame{p['frame']}_output"] = masks[idx].clone()
        ids = list(state["obj_ids"])
        logits = torch.full((args.frames, len(ids), 1, size, size), -1024.0)
        for t, _, masks in model.propagate_in_video(state):
            logits[t] = masks
        expected["video/propagated_logits"] = logits

    os.makedirs(args.out, exist_ok=True)
    OmegaConf.save(cfg, os.path.join(args.out, "config.yaml"))
    torch.save({"model": model.state_dict()}, os.path.join(args.out, "checkpoint.pt"))
    torch.save(expected, os.path.join(args.out, "expected.pt"))
    with open(os.path.join(args.out, "prompts.json"), "w") as f:
        json.dump([{k: v for k, v in p.items() if not k.endswith("_pixels")} for p in prompts], f)
    fixture = {"config": "config.yaml", "seed": args.seed, "frames": args.frames,
               "image_size": size, "object_ids_in_output_order": ids, "prompts": prompts,
               "tensors": {k: list(v.shape) for k, v in expected.items()}}
    with open(os.path.join(args.out, "fixture.json"), "w") as f:
        json.dump(fixture, f, indent=1)


if __name__ == "__main__":
    main()
