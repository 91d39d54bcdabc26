"""Per-frame SAM2 latency of the official Python implementation beside `iris bench sam2`.

Both sides run the same weights, the same synthetic clip (a bright square moving over a textured
background, built exactly as `iris bench sam2` builds it), the same box prompt on frame 0 and the
same number of CPU threads, one after the other in separate processes. Two numbers per input size:

  image_encoder  forward_image on one frame: median over --repeats after one warm-up run
  tracking_step  one frame of propagate_in_video minus its image-encoder time (memory attention,
                 heads, memory encoder, output resize), median over frames 1..T-1

Weights: --config with --checkpoint (official format), --size NAME (random weights of an official
size from ../shared/fixtures/sam2/sam2.1_hiera_*.yaml, seeded), or by default the parity fixture
../shared/fixtures/sam2/micro_seed0. The video predictor gets the settings the official
build_sam2_video_predictor adds (apply_postprocessing), written into the config both sides read.

usage: compare_official_sam2.py [--size tiny | --config C --checkpoint W] [--image-size 512 ...]
                                [--threads 2] [--frames 8] [--repeats 5] [--iris build/iris]
                                [--json OUT]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sam2.sam2_video_predictor as video_predictor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "fixtures", "sam2")
# Without its CUDA extension the official code skips hole filling with a warning per frame.
warnings.filterwarnings("ignore", category=UserWarning, module="sam2")

SIZE_FILES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}

# What build_sam2_video_predictor(apply_postprocessing=True) sets on top of a config file.
PREDICTOR_SETTINGS = {
    "_target_": "sam2.sam2_video_predictor.SAM2VideoPredictor",
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 8,
}
DECODER_SETTINGS = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


def synthetic_frames(t, s):
    """The clip of `iris bench sam2`: the same generator calls give the same values as LibTorch."""
    torch.manual_seed(0)
    frames = torch.rand(t, 3, s, s) * 0.2 + 0.3
    for i in range(t):
        x = s // 8 + i * s // (2 * max(t, 1))
        frames[i, :, s // 3 : s // 3 + s // 4, x : x + s // 4] = 0.9
    return (frames - 0.45) / 0.226


def prepare_weights(args, workdir):
    """Returns (config path, checkpoint path, label) in the official format."""
    if args.config:
        if not args.checkpoint:
            sys.exit("--config needs --checkpoint (or use --size for random weights)")
        cfg, ckpt, label = args.config, args.checkpoint, os.path.basename(args.config)
    elif args.size:
        cfg = os.path.join(SHARED, f"sam2.1_hiera_{SIZE_FILES[args.size]}.yaml")
        ckpt, label = None, args.size
    else:
        fixture = os.path.join(SHARED, "micro_seed0")
        cfg, ckpt = os.path.join(fixture, "config.yaml"), os.path.join(fixture, "checkpoint.pt")
        label = "micro_seed0"
    conf = OmegaConf.load(cfg)
    for key, value in PREDICTOR_SETTINGS.items():
        OmegaConf.update(conf, f"model.{key}", value, force_add=True)
    for key, value in DECODER_SETTINGS.items():
        OmegaConf.update(conf, f"model.sam_mask_decoder_extra_args.{key}", value, force_add=True)
    cfg_out = os.path.join(workdir, "config.yaml")
    OmegaConf.save(conf, cfg_out)
    if ckpt is None:
        torch.manual_seed(args.seed)
        model = instantiate(conf.model, _recursive_=True)
        ckpt = os.path.join(workdir, "checkpoint.pt")
        torch.save({"model": model.state_dict()}, ckpt)
    return cfg_out, ckpt, label


def build_official(cfg_path, ckpt_path, image_size):
    conf = OmegaConf.load(cfg_path)
    conf.model.image_size = image_size
    model = instantiate(conf.model, _recursive_=True)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if "model" in state else state, strict=True)
    model.eval()
    # Memories are stored in bf16; the CPU has no autocast to bring them back to fp32 for the
    # fp32 memory attention, so they are cast there (what autocast does on the GPU path).
    attend = model.memory_attention.forward

    def attend_fp32(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return attend(curr=curr, memory=memory.float(), curr_pos=curr_pos,
                      memory_pos=memory_pos.float(), num_obj_ptr_tokens=num_obj_ptr_tokens)

    model.memory_attention.forward = attend_fp32
    return model


def bench_official(cfg_path, ckpt_path, image_size, frames, repeats):
    model = build_official(cfg_path, ckpt_path, image_size)
    clip = synthetic_frames(frames, image_size)
    encoder = []
    with torch.inference_mode():
        img = clip[0:1]
        model.forward_image(img)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.forward_image(img)
            encoder.append((time.perf_counter() - t0) * 1e3)

        # Time spent in the image encoder during tracking, to take it out of the step time.
        spent = [0.0]
        forward_image = model.forward_image

        def timed_forward_image(x):
            t0 = time.perf_counter()
            out = forward_image(x)
            spent[0] += (time.perf_counter() - t0) * 1e3
            return out

        model.forward_image = timed_forward_image
        video_predictor.load_video_frames = lambda **kw: (clip, image_size, image_size)
        state = model.init_state("synthetic")
        q = float(image_size)
        model.add_new_points_or_box(state, 0, 1,
                                    box=torch.tensor([q / 8, q / 3, q / 8 + q / 4, q / 3 + q / 4]))
        steps = []
        spent[0] = 0.0
        t0 = time.perf_counter()
        for _ in model.propagate_in_video(state):
            now = time.perf_counter()
            steps.append((now - t0) * 1e3 - spent[0])
            spent[0] = 0.0
            t0 = time.perf_counter()
    return statistics.median(encoder), statistics.median(steps[1:])  # frame 0 holds the prompt


def bench_ours(iris, cfg_path, ckpt_path, image_size, frames, repeats, threads, workdir):
    out = os.path.join(workdir, f"iris_{image_size}.json")
    cmd = [iris, "--threads", str(threads), "--quiet", "bench", "sam2", "--config", cfg_path,
           "--checkpoint", ckpt_path, "--image-size", str(image_size), "--frames", str(frames),
           "--repeats", str(repeats), "--json", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        rows = {r["phase"]: r for r in json.load(f)}
    return rows["image_encoder"]["median_ms"], rows["tracking_step"]["median_ms"]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZE_FILES), help="random weights of an official size")
    ap.add_argument("--config", help="official-format config (model: tree)")
    ap.add_argument("--checkpoint", help="official-format checkpoint for --config")
    ap.add_argument("--image-size", type=int, nargs="+", default=[512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iris", default=os.path.join(REPO, "build", "iris"))
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args()
    if args.frames < 3:
        sys.exit("--frames must be >= 3")

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="iris-sam2-compare-") as workdir:
        cfg, ckpt, label = prepare_weights(args, workdir)
        for s in args.image_size:
            ours = bench_ours(args.iris, cfg, ckpt, s, args.frames, args.repeats, args.threads,
                              workdir)
            theirs = bench_official(cfg, ckpt, s, args.frames, args.repeats)
            for phase, o, t in zip(("image_encoder", "tracking_step"), ours, theirs):
                rows.append({"model": label, "image_size": s, "threads": args.threads,
                             "phase": phase, "iris_ms": o, "official_ms": t,
                             "official_over_iris": t / o if o > 0 else float("nan")})

    print(f"# {datetime.date.today()}, {cpu_name()} ({os.cpu_count()} cores), torch "
          f"{torch.__version__}, {args.threads} thread(s), {args.frames} frames")
    print(f"{'model':<12} {'input':>6} {'phase':<14} {'iris ms':>10} {'official ms':>12} "
          f"{'official/iris':>14}")
    for r in rows:
        print(f"{r['model']:<12} {r['image_size']:>6} {r['phase']:<14} {r['iris_ms']:>10.1f} "
              f"{r['official_ms']:>12.1f} {r['official_over_iris']:>14.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
