"""Writes torch.save / safetensors files and their reference values for iris_io_tests.

Usage: make_fixtures.py OUT_DIR. For every tensor, OUT_DIR/raw/<n>.bin holds its values (contiguous,
little-endian) and manifest.json its dtype, shape, stride, storage offset and storage group.
"""
import collections
import json
import os
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(os.path.join(out, "raw"), exist_ok=True)
torch.manual_seed(0)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(8, 3)


net = TinyNet()
net.bn.running_mean.uniform_()
net.bn.running_var.uniform_(0.5, 2.0)
net.bn.num_batches_tracked.fill_(7)

base = torch.arange(24, dtype=torch.float32) * 0.5
plain = {
    "f32": torch.randn(3, 4),
    "f16": torch.randn(5).half(),
    "bf16": torch.randn(2, 3).bfloat16(),
    "f64": torch.randn(2, 2, dtype=torch.float64),
    "i64": torch.tensor([-(2**40), 0, 2**40 + 3]),
    "i32": torch.tensor([[1, -2], [3, 2**31 - 1]], dtype=torch.int32),
    "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
    "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros(0, 3),
    "transposed": torch.randn(3, 5).t(),  # non-contiguous
    "offset": base[5:11],  # storage offset 5, shares base's storage
    "shared_a": base.view(4, 6),
    "shared_b": base[::2],  # strided view of the same storage
}

manifest = []
counter = [0]


def describe(tensors, key=""):
    storages = {}
    entries = {}
    for name, t in tensors.items():
        ptr = t.untyped_storage().data_ptr()
        group = storages.setdefault(ptr, len(storages))
        raw = "raw/%d.bin" % counter[0]
        counter[0] += 1
        with open(os.path.join(out, raw), "wb") as f:
            f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        entries[name] = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "offset": t.storage_offset(),
            "group": group,
            "raw": raw,
        }
    return entries


torch.save(plain, os.path.join(out, "plain.pt"))
manifest.append({"file": "plain.pt", "key": "", "tensors": describe(plain)})

sd = net.state_dict()  # an OrderedDict with _metadata
torch.save({"model": sd, "epoch": 3, "loss": 0.25, "name": "tiny", "steps": [1, 2], "none": None},
           os.path.join(out, "module.pt"))
manifest.append({"file": "module.pt", "key": "model", "tensors": describe(sd)})

torch.save(sd, os.path.join(out, "state_dict.pt"))
manifest.append({"file": "state_dict.pt", "key": "", "tensors": describe(sd)})

torch.save({"x": plain["f32"], "y": plain["offset"]}, os.path.join(out, "proto4.pt"), pickle_protocol=4)
manifest.append({"file": "proto4.pt", "key": "",
                 "tensors": describe({"x": plain["f32"], "y": plain["offset"]})})

param = {"p": torch.nn.Parameter(torch.randn(2, 2))}
torch.save(param, os.path.join(out, "parameter.pt"))
manifest.append({"file": "parameter.pt", "key": "", "tensors": describe({"p": param["p"].detach()})})

st = {k: v.contiguous() for k, v in plain.items() if k not in ("offset", "shared_a", "shared_b")}
st["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
save_file(st, os.path.join(out, "python.safetensors"), metadata={"source": "python"})
manifest.append({"file": "python.safetensors", "key": "", "tensors": describe(st)})


class Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


torch.save({"x": torch.ones(1), "evil": Evil()}, os.path.join(out, "evil.pt"))

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
