"""A `prepare` or a `view` into OUT that stops half-way and waits for a gate file: the first of two runs on one
output folder (tests/test_hostile_input.py). Prints "holding" once it waits.

    python tests/support/hold_output.py prepare OUT GATE VIDEOS   # waits with a frames file half-written
    python tests/support/hold_output.py view OUT GATE DETECTIONS GROUND_TRUTH   # waits before its first page
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def wait_for(gate: Path) -> None:
    print("holding", flush=True)
    while not gate.exists():
        time.sleep(0.05)


def hold_prepare(out: Path, gate: Path, videos: str) -> int:
    import talmts.data.prepare as prepare
    from talmts.fileio import atomic_open

    def save_array(path: Path, array: np.ndarray) -> None:
        with atomic_open(path, "wb") as f:
            f.write(b"half of it")  # the temporary exists, unfinished, while this run waits
            f.flush()
            wait_for(gate)
            f.seek(0)
            f.truncate()
            np.save(f, array)

    prepare.save_array = save_array
    options = prepare.PrepareOptions(fps=10.0, size=32, flow="none")
    summary = prepare.prepare_dataset(videos, out, options, workers=1, progress=False)
    print(summary.report(), flush=True)
    return 0 if summary.ok else 1


def hold_view(out: Path, gate: Path, detections: str, ground_truth: str) -> int:
    import talmts.engine.site as site
    from talmts.formats import read_annotations, read_detections

    write_page, waited = site.write_page, []

    def first_waits(path: Path, **kwargs: object) -> Path:
        if not waited:
            waited.append(path)
            wait_for(gate)
        return write_page(path, **kwargs)

    site.write_page = first_waits
    site.build_view(read_detections(detections), read_annotations(ground_truth), out)
    return 0


if __name__ == "__main__":
    mode, out, gate, *rest = sys.argv[1:]
    run = hold_prepare if mode == "prepare" else hold_view
    sys.exit(run(Path(out), Path(gate), *rest))
