"""Reference for the IRIS geometry test: resamples a label map written on the prepared grid onto
the query's grid with nibabel (nearest neighbour) and compares it with IRIS's mask.

usage: resample_reference.py PREPARED_MASK QUERY_IMAGE IRIS_MASK
prints JSON: voxels, mismatches, max affine difference, the mask's value counts.
"""
import json
import sys

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

prepared, query, ours = (nib.load(p) for p in sys.argv[1:4])
expected = resample_from_to(prepared, query, order=0, mode="constant", cval=0)
a = np.asarray(expected.dataobj).astype(np.int64)
b = np.asarray(ours.dataobj).astype(np.int64)
values, counts = np.unique(b, return_counts=True)
print(json.dumps({
    "voxels": int(a.size),
    "shape_equal": list(a.shape) == list(b.shape),
    "mismatches": int((a != b).sum()) if a.shape == b.shape else -1,
    "affine_max_difference": float(np.abs(ours.affine - query.affine).max()),
    "values": {str(int(v)): int(c) for v, c in zip(values, counts)},
}))
