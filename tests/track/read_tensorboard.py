"""Reads TensorBoard event files with the tensorboard package (reference check for IRIS's writer).

usage: read_tensorboard.py EVENT_DIR  ->  JSON on stdout
"""
import glob
import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow


def main(folder):
    files = sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*")))
    # Every record through the CRC-checking reader, and the first event's file version.
    records, first = 0, None
    for path in files:
        reader = pywrap_tensorflow.PyRecordReader_New(path.encode(), 0, b"", None)
        while True:
            try:
                reader.GetNext()
            except Exception as e:  # OutOfRangeError at the end, DataLossError on a bad CRC
                if type(e).__name__ != "OutOfRangeError":
                    raise
                break
            event = event_pb2.Event.FromString(reader.record())
            if first is None:
                first = event
            records += 1
    acc = EventAccumulator(folder, size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {
        tag: [[e.step, e.value, e.wall_time] for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }
    json.dump(
        {
            "files": [os.path.basename(f) for f in files],
            "records": records,
            "file_version": first.file_version if first else "",
            "scalars": scalars,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1])
