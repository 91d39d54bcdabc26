"""Reference outputs of the official SAM2 image encoder (Hiera + FpnNeck) with random weights.

Usage: make_image_encoder_ref.py OUT_DIR. Writes one OUT_DIR/<case>.safetensors per case with
`param.<name>` (the module's state dict), `input` and the outputs: `out.backbone_fpn.<i>` and
`out.vision_pos_enc.<i>` for encoder cases, `out.trunk.<i>` for trunk-only cases. The C++ test
builds the same configurations (image_encoder_test.cpp) and compares.
"""

import os
import sys

import torch
from safetensors.torch import save_file
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine


def randomize(module):
    # Default init leaves LayerNorms at 1/0 and position embeddings at 0: perturb them too.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "norm" in name or "pos_embed" in name:
                p.copy_(0.5 * torch.randn_like(p))


def save(path, module, x, outputs):
    tensors = {"param." + k: v.contiguous() for k, v in module.state_dict().items()}
    tensors["input"] = x.contiguous()
    tensors.update({k: v.contiguous() for k, v in outputs.items()})
    save_file(tensors, path)


def encoder_case(out_dir, name, trunk_kwargs, neck_kwargs, scalp, shape):
    trunk = Hiera(**trunk_kwargs)
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=neck_kwargs.pop("num_pos_feats"), normalize=True, temperature=10000
        ),
        backbone_channel_list=trunk.channel_list,
        **neck_kwargs,
    )
    model = ImageEncoder(trunk=trunk, neck=neck, scalp=scalp).eval()
    randomize(model)
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x)
    outputs = {}
    for i, t in enumerate(out["backbone_fpn"]):
        outputs[f"out.backbone_fpn.{i}"] = t
    for i, t in enumerate(out["vision_pos_enc"]):
        outputs[f"out.vision_pos_enc.{i}"] = t
    save(os.path.join(out_dir, name + ".safetensors"), model, x, outputs)


def trunk_case(out_dir, name, trunk_kwargs, shape):
    model = Hiera(**trunk_kwargs).eval()
    randomize(model)
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x)
    save(
        os.path.join(out_dir, name + ".safetensors"),
        model,
        x,
        {f"out.trunk.{i}": t for i, t in enumerate(out)},
    )


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    # Padded windows in stage 3 (w6 on 8x8) and at the stage-4 q-pool entry, a global block,
    # a non-square background embedding, nearest top-down on levels 2 and 3, scalp 1.
    encoder_case(
        out_dir,
        "encoder_padded",
        dict(
            embed_dim=16,
            num_heads=1,
            stages=(1, 2, 3, 2),
            window_spec=(8, 4, 6, 3),
            global_att_blocks=(5,),
            window_pos_embed_bkg_spatial_size=(5, 3),
        ),
        dict(num_pos_feats=24, d_model=24, fpn_top_down_levels=[2, 3], fpn_interp_model="nearest"),
        1,
        (1, 3, 128, 128),
    )
    # Non-square input (96x160), two heads, batch 2, bilinear average top-down on every level.
    encoder_case(
        out_dir,
        "encoder_nonsquare",
        dict(
            embed_dim=8,
            num_heads=2,
            stages=(1, 1, 2, 1),
            window_spec=(4, 2, 4, 2),
            global_att_blocks=(),
            window_pos_embed_bkg_spatial_size=(3, 5),
        ),
        dict(num_pos_feats=16, d_model=16, fpn_interp_model="bilinear", fuse_type="avg"),
        0,
        (2, 3, 96, 160),
    )
    # One q-pool stage only (later stages widen without pooling), last stage only, stochastic
    # depth configured but inactive in eval mode.
    trunk_case(
        out_dir,
        "trunk_qpool1",
        dict(
            embed_dim=8,
            num_heads=1,
            q_pool=1,
            stages=(1, 1, 1, 1),
            window_spec=(8, 8, 8, 8),
            global_att_blocks=(2,),
            window_pos_embed_bkg_spatial_size=(4, 4),
            drop_path_rate=0.2,
            return_interm_layers=False,
        ),
        (1, 3, 64, 64),
    )


if __name__ == "__main__":
    main()
