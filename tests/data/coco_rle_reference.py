"""Decodes every annotation of a COCO-video JSON with pycocotools and writes, per annotation id,
what the C++ test compares: area, two position checksums of the decoded mask (row-major pixel
indices, summed and summed squared, mod 2**64), pycocotools' area and bbox, and whether
re-encoding the decoded mask with pycocotools gives back the same compressed counts."""
import json
import sys

import numpy as np
from pycocotools import mask as mask_utils

MOD = 2**64


def main(json_path, out_path):
    with open(json_path) as f:
        doc = json.load(f)
    out = {}
    for ann in doc["annotations"]:
        seg = dict(ann["segmentation"])
        h, w = seg["size"]
        if isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = {"size": [h, w], "counts": seg["counts"].encode("ascii")}
        m = mask_utils.decode(rle)
        idx = np.flatnonzero(m.astype(np.uint8)).astype(object)
        again = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        out[str(ann["id"])] = {
            "area": int(m.sum()),
            "s1": int(sum(idx) % MOD),
            "s2": int(sum(i * i for i in idx) % MOD),
            "api_area": int(mask_utils.area(rle)),
            "bbox": [int(round(v)) for v in mask_utils.toBbox(rle).tolist()],
            "same_counts": isinstance(seg["counts"], list)
            or again["counts"].decode("ascii") == seg["counts"],
        }
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
