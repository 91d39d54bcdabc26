"""Reference outputs of the official SAM2 prompt encoder and mask decoder (random weights).

Usage: make_heads_ref.py OUT_DIR. Writes OUT_DIR/heads_ref.safetensors holding
  pe.<key>, md_<config>.<key>           the modules' state dicts,
  pe_case.<case>.<name>                 prompt encoder inputs and outputs,
  pe_out.dense_pe                       get_dense_pe(),
  md_case.<case>.<name>                 mask decoder inputs and outputs,
and the metadata "md_cases": "case:config:multimask:repeat_image:training,...".
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from sam2.modeling.sam.transformer import TwoWayTransformer

DIM = 32
GRID = 8
INPUT = 128


def perturb_norms(module):
    # Norm layers start at identity; move them so that a swapped weight/bias would show.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or "mask_downscaling.1" in name or "mask_downscaling.4" in name \
                    or "output_upscaling.1" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))


def decoder(high_res, pred_obj, obj_mlp, sigmoid, dynamic, token_for_ptr):
    md = MaskDecoder(
        transformer_dim=DIM,
        transformer=TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=2, mlp_dim=64),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=DIM,
        use_high_res_features=high_res,
        iou_prediction_use_sigmoid=sigmoid,
        dynamic_multimask_via_stability=dynamic,
        pred_obj_scores=pred_obj,
        pred_obj_scores_mlp=obj_mlp,
        use_multimask_token_for_obj_ptr=token_for_ptr,
    )
    perturb_norms(md)
    return md


def main():
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tensors = {}

    # --- prompt encoder ---------------------------------------------------------------------
    pe = PromptEncoder(embed_dim=DIM, image_embedding_size=(GRID, GRID),
                       input_image_size=(INPUT, INPUT), mask_in_chans=16).eval()
    perturb_norms(pe)
    for k, v in pe.state_dict().items():
        tensors["pe." + k] = v
    coords = torch.rand(2, 3, 2) * INPUT
    labels = torch.tensor([[1, 0, -1], [2, 3, 1]], dtype=torch.int32)
    boxes = torch.sort(torch.rand(2, 2, 2) * INPUT, dim=1).values.reshape(2, 4)
    masks = torch.randn(2, 1, 4 * GRID, 4 * GRID) * 3
    pe_cases = {
        "points": dict(points=(coords, labels), boxes=None, masks=None),
        "box": dict(points=None, boxes=boxes, masks=None),
        "points_box": dict(points=(coords[:, :2], labels[:, :2].flip(0)), boxes=boxes, masks=None),
        "mask": dict(points=None, boxes=None, masks=masks),
        "nothing": dict(points=None, boxes=None, masks=None),
    }
    with torch.no_grad():
        for name, args in pe_cases.items():
            sparse, dense = pe(**args)
            p = f"pe_case.{name}."
            if args["points"] is not None:
                tensors[p + "point_coords"] = args["points"][0]
                tensors[p + "point_labels"] = args["points"][1]
            if args["boxes"] is not None:
                tensors[p + "boxes"] = args["boxes"]
            if args["masks"] is not None:
                tensors[p + "masks"] = args["masks"]
            tensors[p + "sparse"] = sparse
            tensors[p + "dense"] = dense
        tensors["pe_out.dense_pe"] = pe.get_dense_pe()

    # --- mask decoder ------------------------------------------------------------------------
    configs = {
        # SAM2.1's heads at small dims.
        "a": decoder(True, True, True, True, True, True),
        # The plain SAM decoder: no object score, no high-res features.
        "b": decoder(False, False, False, False, False, False),
        # A linear object-score head with the dynamic single-mask fallback.
        "c": decoder(False, True, False, False, True, False),
    }
    for cfg, md in configs.items():
        for k, v in md.state_dict().items():
            tensors[f"md_{cfg}." + k] = v

    image_pe = torch.randn(1, DIM, GRID, GRID)

    def inputs(batch, image_batch, high_res, stable_entries=0):
        d = {
            "image_embeddings": torch.randn(image_batch, DIM, GRID, GRID),
            "image_pe": image_pe,
            "sparse": torch.randn(batch, 3, DIM),
            "dense": torch.randn(batch, DIM, GRID, GRID),
        }
        if high_res:
            feat_b = image_batch if image_batch == 1 else batch
            f0 = torch.randn(feat_b, DIM // 8, 4 * GRID, 4 * GRID)
            # Large positive high-res features give token 0 large logits, hence a stable mask.
            if stable_entries:
                f0[-stable_entries:] = 100 * (f0[-stable_entries:] + 3)
            d["feat_s0"] = f0
            d["feat_s1"] = torch.randn(feat_b, DIM // 4, 2 * GRID, 2 * GRID)
        return d

    # name: (config, multimask, repeat_image, training, batch, stable entries)
    cases = {
        "a_multi": ("a", True, False, False, 2, 0),
        "a_single_repeat": ("a", False, True, False, 3, 0),
        "a_stability": ("a", False, False, False, 4, 2),
        "a_train_single": ("a", False, False, True, 2, 0),
        "a_multi_repeat_train": ("a", True, True, True, 2, 0),
        "b_multi": ("b", True, False, False, 2, 0),
        "b_single_repeat": ("b", False, True, False, 2, 0),
        "c_single": ("c", False, False, False, 2, 0),
    }
    listing = []
    for name, (cfg, multimask, repeat, training, batch, stable) in cases.items():
        md = configs[cfg]
        md.train(training)
        d = inputs(batch, 1 if repeat else batch, md.use_high_res_features, stable)
        hr = [d["feat_s0"], d["feat_s1"]] if md.use_high_res_features else None
        with torch.no_grad():
            masks_out, iou, tokens, obj = md(d["image_embeddings"], d["image_pe"], d["sparse"],
                                             d["dense"], multimask, repeat, hr)
            if name == "a_stability":
                all_masks = md.predict_masks(d["image_embeddings"], d["image_pe"], d["sparse"],
                                             d["dense"], repeat, hr)[0]
                scores = md._get_stability_scores(all_masks[:, 0:1])
                d["is_stable"] = (scores >= md.dynamic_multimask_stability_thresh).flatten()
                assert d["is_stable"].any() and not d["is_stable"].all(), scores
        d.update(masks=masks_out, iou_pred=iou, sam_tokens_out=tokens, object_score_logits=obj)
        for k, v in d.items():
            tensors[f"md_case.{name}.{k}"] = v
        listing.append(f"{name}:{cfg}:{int(multimask)}:{int(repeat)}:{int(training)}")

    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out_dir / "heads_ref.safetensors"),
              metadata={"md_cases": ",".join(listing), "dims": json.dumps([DIM, GRID, INPUT])})


if __name__ == "__main__":
    main()
