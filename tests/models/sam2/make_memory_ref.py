"""Reference data for memory_test.cpp: the official SAM2 memory encoder and memory attention at
small sizes with seeded random weights, their inputs and their outputs, as .safetensors.

usage: make_memory_ref.py encoder|attention OUT_DIR
"""

import sys

import torch
from safetensors.torch import save_file

from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine
from sam2.modeling.sam.transformer import RoPEAttention


def randomize(module):
    # Default inits leave layer scales at 1e-6 and norms at identity, which would hide bugs.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                p.normal_(0.0, 1.0)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return module.eval()


def state(module):
    return {k: v.contiguous() for k, v in module.state_dict().items()}


def make_encoder(in_dim, out_dim, input_projection):
    return randomize(
        MemoryEncoder(
            out_dim=out_dim,
            mask_downsampler=MaskDownSampler(
                embed_dim=in_dim, kernel_size=3, stride=2, padding=1, total_stride=16
            ),
            fuser=Fuser(
                CXBlock(dim=in_dim, kernel_size=7, padding=3, layer_scale_init_value=1e-6),
                num_layers=2,
                dim=in_dim,
                input_projection=input_projection,
            ),
            position_encoding=PositionEmbeddingSine(num_pos_feats=out_dim, normalize=True),
            in_dim=in_dim,
        )
    )


def encoder_refs(out_dir):
    # "a": the SAM2.1 layout (out_proj, no fuser.proj); "b": fuser.proj, no out_proj.
    torch.manual_seed(0)
    enc_a = make_encoder(32, 16, False)
    enc_b = make_encoder(32, 32, True)
    save_file(state(enc_a), f"{out_dir}/encoder_a.safetensors")
    save_file(state(enc_b), f"{out_dir}/encoder_b.safetensors")
    pix_feat = torch.randn(2, 32, 8, 8)
    masks = 4.0 * torch.randn(2, 1, 128, 128)
    io = {"pix_feat": pix_feat, "masks": masks}
    with torch.no_grad():
        for tag, enc in (("a", enc_a), ("b", enc_b)):
            for skip in (False, True):
                out = enc(pix_feat, masks, skip_mask_sigmoid=skip)
                io[f"{tag}_skip{int(skip)}_features"] = out["vision_features"].contiguous()
                io[f"{tag}_skip{int(skip)}_pos"] = out["vision_pos_enc"][0].contiguous()
    save_file(io, f"{out_dir}/encoder_io.safetensors")


def attention_refs(out_dir):
    torch.manual_seed(1)
    d_model, mem_dim = 32, 16
    feat_sizes = (4, 4)  # the test grids are 8x8 and 4x4: the 8x8 one recomputes the table
    layer = MemoryAttentionLayer(
        activation="relu",
        cross_attention=RoPEAttention(
            embedding_dim=d_model, num_heads=2, downsample_rate=1, dropout=0.1,
            kv_in_dim=mem_dim, rope_theta=10000.0, rope_k_repeat=True, feat_sizes=feat_sizes,
        ),
        d_model=d_model,
        dim_feedforward=64,
        dropout=0.1,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention=RoPEAttention(
            embedding_dim=d_model, num_heads=1, downsample_rate=1, dropout=0.1,
            rope_theta=10000.0, feat_sizes=feat_sizes,
        ),
    )
    attn = randomize(MemoryAttention(d_model=d_model, pos_enc_at_input=True, layer=layer,
                                     num_layers=2))
    save_file(state(attn), f"{out_dir}/attention.safetensors")

    batch = 2
    io = {}
    # (grid side, memory frames, object pointers); pointers of d_model split into
    # d_model / mem_dim tokens of mem_dim each, as SAM2Base does.
    cases = {"ptr": (8, 2, 2), "noptr": (8, 2, 0), "small": (4, 1, 2)}
    with torch.no_grad():
        for tag, (side, frames, ptrs) in cases.items():
            n = side * side
            curr = torch.randn(n, batch, d_model)
            curr_pos = torch.randn(n, batch, d_model)
            memory = [torch.randn(frames * n, batch, mem_dim)]
            memory_pos = [torch.randn(frames * n, batch, mem_dim)]
            if ptrs > 0:
                split = d_model // mem_dim
                obj_ptrs = torch.randn(ptrs, batch, d_model)
                obj_ptrs = obj_ptrs.reshape(-1, batch, split, mem_dim).permute(0, 2, 1, 3)
                memory.append(obj_ptrs.flatten(0, 1))
                obj_pos = torch.randn(ptrs, batch, mem_dim).repeat_interleave(split, dim=0)
                memory_pos.append(obj_pos)
            memory = torch.cat(memory, 0)
            memory_pos = torch.cat(memory_pos, 0)
            num_ptr_tokens = memory.shape[0] - frames * n
            out = attn(curr=curr, memory=memory, curr_pos=curr_pos, memory_pos=memory_pos,
                       num_obj_ptr_tokens=num_ptr_tokens)
            io[f"{tag}_curr"] = curr
            io[f"{tag}_curr_pos"] = curr_pos
            io[f"{tag}_memory"] = memory.contiguous()
            io[f"{tag}_memory_pos"] = memory_pos.contiguous()
            io[f"{tag}_num_ptr_tokens"] = torch.tensor([num_ptr_tokens], dtype=torch.int64)
            io[f"{tag}_out"] = out.contiguous()
    save_file(io, f"{out_dir}/attention_io.safetensors")


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"encoder": encoder_refs, "attention": attention_refs}[sys.argv[1]](sys.argv[2])
