"""Reads files written by IRIS with torch.load(weights_only=True) and the safetensors package and
compares them with the originals from make_fixtures.py. Usage: check_outputs.py FIXTURES OUTPUTS."""
import collections
import os
import sys

import torch
from safetensors.torch import load_file, safe_open

fix, outs = sys.argv[1], sys.argv[2]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same(a, b, what):
    assert a.dtype == b.dtype, (what, a.dtype, b.dtype)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert torch.equal(a, b), what


plain = load(os.path.join(fix, "plain.pt"))
module = load(os.path.join(fix, "module.pt"))

# plain.pt re-saved by IRIS as .pt: values, strides, offsets and storage sharing survive.
ours = load(os.path.join(outs, "plain.pt"))
assert list(ours) == list(plain), list(ours)
for k, v in plain.items():
    same(ours[k], v, "plain.pt " + k)
    assert ours[k].stride() == v.stride(), (k, ours[k].stride(), v.stride())
    assert ours[k].storage_offset() == v.storage_offset(), k
ptr = lambda t: t.untyped_storage().data_ptr()
assert ptr(ours["shared_a"]) == ptr(ours["shared_b"]) == ptr(ours["offset"])
print("ok plain.pt")

# plain.pt written as safetensors by IRIS.
st = load_file(os.path.join(outs, "plain.safetensors"))
assert set(st) == set(plain), set(st)
for k, v in plain.items():
    same(st[k], v, "plain.safetensors " + k)
with safe_open(os.path.join(outs, "plain.safetensors"), "pt") as f:
    assert f.metadata() == {"format": "pt"}, f.metadata()
print("ok plain.safetensors")

# module.pt re-saved: nested dict, OrderedDict with _metadata, numbers, strings, lists, None.
ours = load(os.path.join(outs, "module.pt"))
assert ours["epoch"] == 3 and ours["loss"] == 0.25 and ours["name"] == "tiny", ours
assert ours["steps"] == [1, 2] and ours["none"] is None
assert type(ours["model"]) is collections.OrderedDict
assert ours["model"]._metadata == module["model"]._metadata, ours["model"]._metadata
for k, v in module["model"].items():
    same(ours["model"][k], v, "module.pt " + k)
print("ok module.pt")

# .pt -> .safetensors -> .pt through `iris checkpoint convert`, then loaded into the Python module.
rt = load(os.path.join(outs, "roundtrip.pt"))
assert list(rt) == ["model"], list(rt)
assert list(rt["model"]) == list(module["model"]), list(rt["model"])
for k, v in module["model"].items():
    same(rt["model"][k], v, "roundtrip.pt " + k)
print("ok roundtrip.pt")
print("all checks passed")
