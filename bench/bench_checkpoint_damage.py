"""Damage a checkpoint at random many times and count what loading it does: refused with a CheckpointError (the
file is named), loaded with contents identical to the original (the damage hit bytes that carry no content, such
as a zip header's timestamp), or - the failures this benchmark exists to find - loaded with different contents or
failed with an exception that is not a talmts error.

Damages: one random byte changed, one random bit flipped, truncated at a random length, a random 4 KiB block
zeroed, garbage appended.

    python bench/bench_checkpoint_damage.py [--cases 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from talmts.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def damaged(data: bytes, kind: str, rng: random.Random) -> bytes:
    b = bytearray(data)
    if kind == "byte":
        i = rng.randrange(len(b))
        b[i] = (b[i] + rng.randrange(1, 256)) % 256
    elif kind == "bit":
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del b[rng.randrange(len(b)) :]
    elif kind == "zero-block":
        i = rng.randrange(len(b))
        b[i : i + 4096] = bytes(len(b[i : i + 4096]))
    elif kind == "append":
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return bytes(b)


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    state = {  # a small training checkpoint's shape: weights, optimiser moments, metadata, a loss log
        "config": {"name": "bench", "train": {"lr": 1e-4, "epochs": 3}},
        "classes": ["a", "b"],
        "model": {f"layer{i}.weight": torch.randn(64, 64, generator=g) for i in range(4)},
        "optimizer": {"state": {0: {"exp_avg": torch.randn(4096, generator=g), "step": torch.tensor(9.0)}}},
        "history": [{"step": i, "total": float(i) / 7} for i in range(50)],
        "epoch": 1,
        "step": 9,
    }
    outcomes: Counter[tuple[str, str]] = Counter()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-damage-") as tmp:
        good = save_checkpoint(state, Path(tmp) / "good.pt")
        original = load_checkpoint(good)
        data = good.read_bytes()
        path = Path(tmp) / "damaged.pt"
        kinds = ["byte", "bit", "truncate", "zero-block", "append"]
        for case in range(args.cases):
            kind = kinds[case % len(kinds)]
            path.write_bytes(damaged(data, kind, rng))
            try:
                back = load_checkpoint(path)
            except CheckpointError as e:
                outcomes[kind, "refused" if path.name in str(e) else "refused, file not named"] += 1
                continue
            except Exception as e:  # what this benchmark looks for
                outcomes[kind, f"untyped {type(e).__name__}"] += 1
                continue
            outcomes[kind, "loaded, identical" if same(back, original) else "LOADED, DIFFERENT"] += 1
    seconds = time.perf_counter() - started
    print(f"checkpoint of {len(data)} bytes, {args.cases} damaged copies, {seconds:.1f} s")
    print("| damage | outcome | cases |")
    print("|---|---|---|")
    for (kind, outcome), n in sorted(outcomes.items()):
        print(f"| {kind} | {outcome} | {n} |")
    bad = sum(n for (_, o), n in outcomes.items() if o not in ("refused", "loaded, identical"))
    print(f"silent corruptions or untyped errors: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
